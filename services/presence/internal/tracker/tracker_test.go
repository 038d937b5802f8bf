package tracker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/presence/internal/tracker"
)

// clock is a manual clock shared by the tracker and the store's TTLs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is a Notifier that keeps every announced change.
type recorder struct {
	mu      sync.Mutex
	changes []tracker.Change
}

func (r *recorder) Announce(_ context.Context, changes []tracker.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, changes...)
}

// take returns the changes announced since the last take, as "uid:status".
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.changes {
		out = append(out, c.UserID+":"+c.Status)
	}
	r.changes = nil
	return out
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	clock *clock
	store statestore.Store
	rec   *recorder
	tr    *tracker.Tracker
	cfg   tracker.Config
}

const (
	grace    = 5 * time.Second
	leaseTTL = 25 * time.Second
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	f := &fixture{t: t, ctx: context.Background(), clock: c, store: memstore.NewWithClock(c.Now), rec: &recorder{},
		cfg: tracker.Config{Grace: grace, LeaseTTL: leaseTTL}}
	f.restart()
	return f
}

// restart replaces the tracker by a new one over the same store, as a
// presence process restart would.
func (f *fixture) restart() {
	f.tr = tracker.New(f.store, f.rec, f.cfg, f.clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func (f *fixture) connect(replica, uid string) {
	f.t.Helper()
	if err := f.tr.Connect(f.ctx, replica, uid); err != nil {
		f.t.Fatalf("connect %s on %s: %v", uid, replica, err)
	}
}

func (f *fixture) disconnect(replica, uid string) {
	f.t.Helper()
	if err := f.tr.Disconnect(f.ctx, replica, uid); err != nil {
		f.t.Fatalf("disconnect %s on %s: %v", uid, replica, err)
	}
}

func (f *fixture) heartbeat(replica string, users map[string]int) {
	f.t.Helper()
	if err := f.tr.Heartbeat(f.ctx, replica, users); err != nil {
		f.t.Fatalf("heartbeat of %s: %v", replica, err)
	}
}

func (f *fixture) sweep() {
	f.t.Helper()
	if err := f.tr.Sweep(f.ctx); err != nil {
		f.t.Fatalf("sweep: %v", err)
	}
}

func (f *fixture) status(uid string) api.Presence {
	f.t.Helper()
	got, err := f.tr.Presence(f.ctx, []string{uid})
	if err != nil {
		f.t.Fatal(err)
	}
	return got[0]
}

func (f *fixture) wantStatus(uid, want string) {
	f.t.Helper()
	if got := f.status(uid); got.Status != want {
		f.t.Fatalf("status of %s = %s, want %s", uid, got.Status, want)
	}
}

func (f *fixture) wantAnnounced(want ...string) {
	f.t.Helper()
	got := f.rec.take()
	if !slices.Equal(got, want) {
		f.t.Fatalf("announced %q, want %q", got, want)
	}
}

func TestConnectAnnouncesOnlineOnceForManyDevices(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.wantAnnounced("alice:online")
	f.connect("ws-1", "alice") // a second tab
	f.connect("ws-2", "alice") // a phone on the other replica
	f.wantAnnounced()
	f.wantStatus("alice", api.Online)
}

func TestUnknownUserIsOfflineWithNoLastSeen(t *testing.T) {
	f := newFixture(t)
	got := f.status("nobody")
	if got.Status != api.Offline || got.LastSeen != nil {
		t.Fatalf("got %+v, want offline with no last_seen", got)
	}
}

func TestOnlineWhileAnyConnectionRemains(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.connect("ws-1", "alice")
	f.connect("ws-2", "alice")
	f.rec.take()
	f.disconnect("ws-1", "alice")
	f.disconnect("ws-1", "alice")
	f.clock.Advance(2 * grace)
	f.sweep()
	f.wantStatus("alice", api.Online)
	f.wantAnnounced()
}

func TestLastDisconnectGoesOfflineAfterGrace(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.rec.take()
	f.clock.Advance(time.Second)
	left := f.clock.Now()
	f.disconnect("ws-1", "alice")

	f.clock.Advance(grace - time.Second)
	f.sweep()
	f.wantAnnounced()
	f.wantStatus("alice", api.Online)

	f.clock.Advance(time.Second)
	// A reader does not wait for the sweeper.
	f.wantStatus("alice", api.Offline)
	f.sweep()
	f.wantAnnounced("alice:offline")
	got := f.status("alice")
	if got.LastSeen == nil || !got.LastSeen.Equal(left) {
		t.Fatalf("last_seen = %v, want %v", got.LastSeen, left)
	}
	f.sweep()
	f.wantAnnounced() // announced once
}

func TestQuickReconnectDoesNotFlap(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.rec.take()
	f.disconnect("ws-1", "alice")
	f.clock.Advance(grace / 2)
	f.sweep()
	f.connect("ws-2", "alice") // reconnects through the other replica
	f.clock.Advance(2 * grace)
	f.sweep()
	f.wantAnnounced()
	f.wantStatus("alice", api.Online)
}

func TestReconnectAfterGraceAnnouncesBoth(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.rec.take()
	f.disconnect("ws-1", "alice")
	f.clock.Advance(grace)
	f.sweep()
	f.connect("ws-1", "alice")
	f.wantAnnounced("alice:offline", "alice:online")
}

func TestSecondDisconnectExtendsTheGrace(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.disconnect("ws-1", "alice")
	f.clock.Advance(grace - time.Second)
	f.connect("ws-1", "alice")
	f.disconnect("ws-1", "alice")
	f.rec.take()
	f.clock.Advance(time.Second) // the first deadline passes
	f.sweep()
	f.wantAnnounced()
	f.wantStatus("alice", api.Online)
	f.clock.Advance(grace)
	f.sweep()
	f.wantAnnounced("alice:offline")
}

func TestZeroGraceGoesOfflineAtOnce(t *testing.T) {
	f := newFixture(t)
	f.cfg.Grace = 0
	f.restart()
	f.connect("ws-1", "alice")
	f.disconnect("ws-1", "alice")
	f.wantAnnounced("alice:online", "alice:offline")
	f.wantStatus("alice", api.Offline)
}

func TestKilledReplicaUsersExpireOfflineWithinTheLease(t *testing.T) {
	f := newFixture(t)
	f.heartbeat("ws-1", nil)
	f.heartbeat("ws-2", nil)
	f.connect("ws-1", "alice")
	f.connect("ws-1", "bob")
	f.connect("ws-2", "bob")
	f.connect("ws-2", "carol")
	f.rec.take()
	f.heartbeat("ws-1", map[string]int{"alice": 1, "bob": 1})
	// ws-1 is killed here: no disconnect, no heartbeat. ws-2 goes on.
	for elapsed := time.Duration(0); elapsed < leaseTTL-time.Second; elapsed += time.Second {
		f.clock.Advance(time.Second)
		if elapsed%(10*time.Second) == 0 {
			f.heartbeat("ws-2", map[string]int{"bob": 1, "carol": 1})
		}
		f.sweep()
	}
	f.wantAnnounced()
	f.wantStatus("alice", api.Online)
	f.clock.Advance(time.Second)
	f.sweep()
	f.wantAnnounced("alice:offline")
	f.wantStatus("alice", api.Offline)
	f.wantStatus("bob", api.Online) // still on ws-2
	f.wantStatus("carol", api.Online)
	f.sweep()
	f.wantAnnounced()
}

func TestReplicaKilledBeforeItsFirstHeartbeatStillExpires(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.rec.take()
	f.clock.Advance(leaseTTL)
	f.sweep()
	f.wantAnnounced("alice:offline")
}

func TestHeartbeatRepairsMissedConnectsAndDisconnects(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.rec.take()
	// The disconnect of alice and the connect of bob were lost.
	f.heartbeat("ws-1", map[string]int{"bob": 2})
	f.wantAnnounced("bob:online")
	f.clock.Advance(grace)
	f.sweep()
	f.wantAnnounced("alice:offline")
	// bob's two connections are counted: one disconnect keeps him online.
	f.disconnect("ws-1", "bob")
	f.clock.Advance(time.Minute)
	f.heartbeat("ws-1", map[string]int{"bob": 1})
	f.sweep()
	f.wantAnnounced()
	f.wantStatus("bob", api.Online)
}

func TestReplicaBackAfterExpiryBringsItsUsersBack(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.clock.Advance(leaseTTL)
	f.sweep()
	f.wantAnnounced("alice:online", "alice:offline")
	f.heartbeat("ws-1", map[string]int{"alice": 1})
	f.wantAnnounced("alice:online")
	f.clock.Advance(leaseTTL / 2)
	f.heartbeat("ws-1", map[string]int{"alice": 1})
	f.clock.Advance(leaseTTL / 2)
	f.sweep()
	f.wantAnnounced()
	f.wantStatus("alice", api.Online)
}

func TestPendingOfflineSurvivesAPresenceRestart(t *testing.T) {
	f := newFixture(t)
	f.connect("ws-1", "alice")
	f.disconnect("ws-1", "alice")
	f.rec.take()
	f.restart()
	f.clock.Advance(grace)
	f.sweep()
	f.wantAnnounced("alice:offline")
}

func TestManyUsersInOneQuery(t *testing.T) {
	f := newFixture(t)
	var uids []string
	for i := range 100 {
		uid := fmt.Sprintf("u%03d", i)
		uids = append(uids, uid)
		if i%2 == 0 {
			f.connect("ws-1", uid)
		}
	}
	got, err := f.tr.Presence(f.ctx, uids)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		want := api.Offline
		if i%2 == 0 {
			want = api.Online
		}
		if p.UserID != uids[i] || p.Status != want {
			t.Fatalf("presence[%d] = %+v, want %s %s", i, p, uids[i], want)
		}
	}
}

// TestConcurrentReplicasLoseNoConnection has both replicas (each serial,
// as ws reports) and the sweeper work on the same users at once.
func TestConcurrentReplicasLoseNoConnection(t *testing.T) {
	f := newFixture(t)
	users := []string{"alice", "bob", "carol"}
	var wg sync.WaitGroup
	for _, replica := range []string{"ws-1", "ws-2", "ws-3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				for _, u := range users {
					if err := f.tr.Connect(f.ctx, replica, u); err != nil {
						t.Error(err)
						return
					}
				}
				for _, u := range users {
					if err := f.tr.Disconnect(f.ctx, replica, u); err != nil {
						t.Error(err)
						return
					}
				}
			}
			for _, u := range users {
				if err := f.tr.Connect(f.ctx, replica, u); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			if err := f.tr.Sweep(f.ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	for _, replica := range []string{"ws-1", "ws-2"} {
		f.disconnect(replica, "alice")
	}
	f.clock.Advance(grace)
	f.sweep()
	for _, u := range users {
		f.wantStatus(u, api.Online) // ws-3 still holds each of them
	}
	f.disconnect("ws-3", "alice")
	f.clock.Advance(grace)
	f.sweep()
	f.wantStatus("alice", api.Offline)
}

// ctxStore fails every operation once its context is done, as the Dapr
// store does.
type ctxStore struct{ statestore.Store }

func (s ctxStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	if err := ctx.Err(); err != nil {
		return statestore.Item{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s ctxStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Store.BulkGet(ctx, keys)
}

func (s ctxStore) Write(ctx context.Context, op statestore.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.Write(ctx, op)
}

// TestAReportOutlivesItsCaller: a replica killed while its connect is in
// flight cancels the request; the connect still completes, so the
// replica's expiry later finds the user and takes them offline instead of
// leaving a ghost.
func TestAReportOutlivesItsCaller(t *testing.T) {
	f := newFixture(t)
	f.store = ctxStore{f.store}
	f.restart()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.tr.Connect(ctx, "ws-1", "alice"); err != nil {
		t.Fatalf("connect whose caller left: %v", err)
	}
	f.wantStatus("alice", api.Online)
	f.clock.Advance(leaseTTL)
	f.sweep()
	f.wantAnnounced("alice:online", "alice:offline")
}
