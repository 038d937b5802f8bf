package device_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/notification/internal/device"
)

// countingStore counts the reads and writes that reach a store.
type countingStore struct {
	statestore.Store
	mu            sync.Mutex
	reads, writes int
}

func (c *countingStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.Get(ctx, key)
}

func (c *countingStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.BulkGet(ctx, keys)
}

func (c *countingStore) Write(ctx context.Context, op statestore.Op) error {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Store.Write(ctx, op)
}

func (c *countingStore) counts() (reads, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads, c.writes
}

func (c *countingStore) reset() {
	c.mu.Lock()
	c.reads, c.writes = 0, 0
	c.mu.Unlock()
}

// fanout stands in for events.TopicDevicesChanged on the fan-out
// component: it keeps the notices until deliver hands them to every
// replica's index.
type fanout struct {
	mu      sync.Mutex
	pending []events.DevicesChanged
	to      []*device.Index
}

func (f *fanout) Publish(_ context.Context, n events.DevicesChanged) error {
	f.mu.Lock()
	f.pending = append(f.pending, n)
	f.mu.Unlock()
	return nil
}

func (f *fanout) deliver(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	ns := f.pending
	f.pending = nil
	f.mu.Unlock()
	for _, n := range ns {
		for _, x := range f.to {
			if err := x.Changed(context.Background(), n); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (f *fanout) drop() {
	f.mu.Lock()
	f.pending = nil
	f.mu.Unlock()
}

// replica is one notification replica's device registry and index, over
// a store shared with the other replicas.
type replica struct {
	index *device.Index
	reg   *device.Registry
	store *countingStore
}

func newReplica(t *testing.T, shared statestore.Store, f *fanout, fallback bool) replica {
	t.Helper()
	cs := &countingStore{Store: shared}
	x := device.NewIndex(cs, device.IndexOptions{Announcer: f, Fallback: fallback})
	if err := x.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.to = append(f.to, x)
	return replica{index: x, reg: device.NewRegistry(cs, x), store: cs}
}

func withDevices(t *testing.T, x *device.Index, users ...string) map[string]bool {
	t.Helper()
	got, err := x.WithDevices(context.Background(), users)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAChangeOnOneReplicaReachesAnotherByItsNotice: the replica that
// registers or removes a device knows at once; another knows as soon as
// the notice arrives, at the cost of one read of the shard.
func TestAChangeOnOneReplicaReachesAnotherByItsNotice(t *testing.T) {
	shared, f := memstore.New(), &fanout{}
	a, b := newReplica(t, shared, f, false), newReplica(t, shared, f, false)
	d := add(t, a.reg, "bob", "https://x.example/bob")
	if !a.index.Has("bob") {
		t.Fatal("the replica that registered bob's device does not know it")
	}
	if b.index.Has("bob") {
		t.Fatal("the other replica knew before any notice")
	}
	b.store.reset()
	f.deliver(t)
	if !b.index.Has("bob") {
		t.Fatal("the other replica does not know bob's device after the notice")
	}
	if reads, _ := b.store.counts(); reads != 1 {
		t.Errorf("the notice cost %d reads, want 1 (the shard)", reads)
	}
	if err := a.reg.Remove(context.Background(), "bob", d.ID); err != nil {
		t.Fatal(err)
	}
	if a.index.Has("bob") {
		t.Fatal("bob is still listed after removing his last device")
	}
	f.deliver(t)
	if b.index.Has("bob") {
		t.Fatal("the other replica still lists bob after the removal's notice")
	}
}

// TestALostNoticeIsMadeUpByTheRefresh: without the notice, the other
// replica learns of the device at its next reload of the index.
func TestALostNoticeIsMadeUpByTheRefresh(t *testing.T) {
	shared, f := memstore.New(), &fanout{}
	a, b := newReplica(t, shared, f, false), newReplica(t, shared, f, false)
	add(t, a.reg, "bob", "https://x.example/bob")
	f.drop()
	if b.index.Has("bob") {
		t.Fatal("known without notice or refresh")
	}
	if err := b.index.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !b.index.Has("bob") {
		t.Fatal("not known after the refresh")
	}
}

// TestANoticeAlreadyKnownCostsNoRead: a replica's own notice, and one the
// refresh overtook, read nothing; an older shard never replaces a newer.
func TestANoticeAlreadyKnownCostsNoRead(t *testing.T) {
	shared, f := memstore.New(), &fanout{}
	a := newReplica(t, shared, f, false)
	add(t, a.reg, "bob", "https://x.example/bob")
	add(t, a.reg, "carol", "https://x.example/carol")
	a.store.reset()
	f.deliver(t)
	if reads, _ := a.store.counts(); reads != 0 {
		t.Fatalf("the replica's own notices cost %d reads, want 0", reads)
	}
	if err := a.index.Changed(context.Background(), events.DevicesChanged{UserID: "bob", Shard: device.IndexShard("bob"), Version: 1}); err != nil {
		t.Fatal(err)
	}
	if !a.index.Has("bob") || !a.index.Has("carol") {
		t.Fatal("an old notice undid a newer state")
	}
	if err := a.index.Changed(context.Background(), events.DevicesChanged{Shard: device.IndexShards}); err == nil {
		t.Fatal("a notice for a shard out of range was accepted")
	}
}

// TestAUserWithoutDevicesCostsNoRead: once the index is loaded, asking
// about members without devices reads nothing; with the fallback on, each
// is read once per replica, in one BulkGet, then never again.
func TestAUserWithoutDevicesCostsNoRead(t *testing.T) {
	members := make([]string, 50)
	for i := range members {
		members[i] = fmt.Sprint("user", i)
	}
	for _, tc := range []struct {
		name      string
		fallback  bool
		firstRead int
	}{
		{"fallback off", false, 0},
		{"fallback on", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared, f := memstore.New(), &fanout{}
			a := newReplica(t, shared, f, tc.fallback)
			add(t, a.reg, "user7", "https://x.example/7")
			a.store.reset()
			got := withDevices(t, a.index, members...)
			if len(got) != 1 || !got["user7"] {
				t.Fatalf("with devices: %v, want user7", got)
			}
			if reads, _ := a.store.counts(); reads != tc.firstRead {
				t.Fatalf("first decision: %d reads, want %d", reads, tc.firstRead)
			}
			a.store.reset()
			withDevices(t, a.index, members...)
			if reads, writes := a.store.counts(); reads != 0 || writes != 0 {
				t.Fatalf("next decision: %d reads and %d writes, want none", reads, writes)
			}
		})
	}
}

// TestADeviceRegisteredBeforeTheIndexIsFound: a device record written
// before the index existed is found by the fallback, once, and indexed
// for every replica; without the fallback it is found when its user
// lists or registers devices.
func TestADeviceRegisteredBeforeTheIndexIsFound(t *testing.T) {
	ctx := context.Background()
	shared, f := memstore.New(), &fanout{}
	old := newReplica(t, shared, f, false)
	add(t, old.reg, "bob", "https://x.example/bob")
	add(t, old.reg, "carol", "https://x.example/carol")
	for i := range device.IndexShards { // the index did not exist yet
		if err := shared.Write(ctx, statestore.Op{Key: fmt.Sprint("devidx|", i), Delete: true}); err != nil {
			t.Fatal(err)
		}
	}
	f.to = nil

	without := newReplica(t, shared, f, false)
	if got := withDevices(t, without.index, "bob", "carol"); len(got) != 0 {
		t.Fatalf("without the fallback an unindexed device was found: %v", got)
	}
	with := newReplica(t, shared, f, true)
	if got := withDevices(t, with.index, "bob"); !got["bob"] {
		t.Fatal("the fallback did not find bob's device")
	}
	f.deliver(t)
	if got := withDevices(t, without.index, "bob"); !got["bob"] {
		t.Fatal("bob, found by the fallback, is not indexed for the other replicas")
	}
	if _, err := without.reg.List(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if !without.index.Has("carol") {
		t.Fatal("listing carol's devices did not index her")
	}
}

// TestSyncMendsTheIndex: whatever the index says, Sync makes it agree
// with the user's device record.
func TestSyncMendsTheIndex(t *testing.T) {
	ctx := context.Background()
	shared, f := memstore.New(), &fanout{}
	a := newReplica(t, shared, f, false)
	d := add(t, a.reg, "bob", "https://x.example/bob")
	if err := shared.Write(ctx, statestore.Op{Key: "devices|bob", Delete: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Sync(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if a.index.Has("bob") {
		t.Fatal("bob has no device record but stays indexed")
	}
	add(t, a.reg, "bob", "https://x.example/bob")
	if err := a.reg.Remove(ctx, "bob", d.ID); err == nil {
		t.Fatal("removed a device that no longer exists")
	}
	if !a.index.Has("bob") {
		t.Fatal("bob's device is back but he is not indexed")
	}
}

// TestConcurrentRegistrationsOnTwoReplicasAreAllIndexed: registrations
// racing on the shards all land.
func TestConcurrentRegistrationsOnTwoReplicasAreAllIndexed(t *testing.T) {
	shared, f := memstore.New(), &fanout{}
	a, b := newReplica(t, shared, f, false), newReplica(t, shared, f, false)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := a
			if i%2 == 1 {
				r = b
			}
			d, _ := device.Registration{Platform: "webhook", URL: fmt.Sprintf("https://x.example/%d", i)}.Validate()
			if _, err := r.reg.Add(context.Background(), fmt.Sprint("user", i), d); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	fresh := newReplica(t, shared, f, false)
	for i := range 200 {
		if u := fmt.Sprint("user", i); !fresh.index.Has(u) {
			t.Fatalf("%s is missing from the index", u)
		}
	}
	f.deliver(t)
	for i := range 200 {
		if u := fmt.Sprint("user", i); !a.index.Has(u) || !b.index.Has(u) {
			t.Fatalf("%s is missing from a replica's index after the notices", u)
		}
	}
}
