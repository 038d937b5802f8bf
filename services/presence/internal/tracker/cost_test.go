package tracker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
)

// countingStore counts the state store operations presence makes.
type countingStore struct {
	statestore.Store
	gets, bulkGets, bulkKeys, writes, transacts atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	c.bulkGets.Add(1)
	c.bulkKeys.Add(int64(len(keys)))
	return c.Store.BulkGet(ctx, keys)
}

func (c *countingStore) Write(ctx context.Context, op statestore.Op) error {
	c.writes.Add(1)
	return c.Store.Write(ctx, op)
}

func (c *countingStore) Transact(ctx context.Context, ops []statestore.Op) error {
	c.transacts.Add(1)
	return c.Store.Transact(ctx, ops)
}

func (c *countingStore) ops() int64 {
	return c.gets.Load() + c.bulkGets.Load() + c.writes.Load() + c.transacts.Load()
}

func (c *countingStore) reset() {
	for _, n := range []*atomic.Int64{&c.gets, &c.bulkGets, &c.bulkKeys, &c.writes, &c.transacts} {
		n.Store(0)
	}
}

// idleCost is what presence does per second for users idling on two ws
// replicas that heartbeat every 8 s, with the sweeper every second.
type idleCost struct {
	calls, storeOps, bulkKeys, announced float64
	heartbeat                            time.Duration // wall time of one heartbeat of one replica
}

func measureIdle(t *testing.T, users int) idleCost {
	t.Helper()
	const (
		interval = 8 * time.Second
		window   = 80 * time.Second // ten heartbeat intervals
	)
	f := newFixture(t)
	store := &countingStore{Store: memstore.NewWithClock(f.clock.Now)}
	f.store = store
	f.restart()
	live := map[string]map[string]int{"ws-1": {}, "ws-2": {}}
	for i := range users {
		replica := "ws-1"
		if i%2 == 1 {
			replica = "ws-2"
		}
		uid := fmt.Sprintf("user-%06d", i)
		f.connect(replica, uid)
		live[replica][uid] = 1
	}
	f.heartbeat("ws-1", live["ws-1"])
	f.heartbeat("ws-2", live["ws-2"])
	f.rec.take()
	store.reset()

	var calls int
	var hbTime time.Duration
	var hbs int
	for elapsed := time.Second; elapsed <= window; elapsed += time.Second {
		f.clock.Advance(time.Second)
		if elapsed%interval == 0 {
			for _, replica := range []string{"ws-1", "ws-2"} {
				start := time.Now()
				f.heartbeat(replica, live[replica])
				hbTime += time.Since(start)
				hbs++
				calls++
			}
		}
		f.sweep()
	}
	secs := window.Seconds()
	return idleCost{
		calls:     float64(calls) / secs,
		storeOps:  float64(store.ops()) / secs,
		bulkKeys:  float64(store.bulkKeys.Load()) / secs,
		announced: float64(len(f.rec.take())) / secs,
		heartbeat: hbTime / time.Duration(hbs),
	}
}

// TestIdleCostDoesNotGrowWithUsers measures presence's work for 10,000
// idle users (docs/benchmarks.md, Presence) and checks that it is the same
// for 1,000: heartbeats are batched per replica, so idling costs per
// replica, not per user.
//
//	go test ./services/presence/internal/tracker -run TestIdleCost -v
func TestIdleCostDoesNotGrowWithUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("connects 11,000 users")
	}
	small, large := measureIdle(t, 1_000), measureIdle(t, 10_000)
	for _, c := range []struct {
		users int
		cost  idleCost
	}{{1_000, small}, {10_000, large}} {
		t.Logf("%6d idle users on 2 replicas: %.2f presence calls/s, %.2f store ops/s (%.1f keys read in bulk/s), "+
			"%.2f announcements/s, one heartbeat of %d users handled in %s",
			c.users, c.cost.calls, c.cost.storeOps, c.cost.bulkKeys, c.cost.announced, c.users/2, c.cost.heartbeat.Round(10*time.Microsecond))
	}
	if large.calls != small.calls || large.storeOps != small.storeOps {
		t.Fatalf("idle cost grows with users: %+v for 1,000, %+v for 10,000", small, large)
	}
	if large.announced != 0 {
		t.Fatalf("idle users announced %.2f changes/s", large.announced)
	}
	if large.calls > 1 {
		t.Fatalf("%.2f presence calls/s for idle users: heartbeats are not batched", large.calls)
	}
}
