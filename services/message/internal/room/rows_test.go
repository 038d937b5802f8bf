package room_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// recordingStore records the keys of every call that reaches the store.
type recordingStore struct {
	statestore.Store
	mu       sync.Mutex
	bulkGets [][]string
	transact [][]string
	writes   []string
	// failTransact, when set, fails the next transaction that holds a
	// key with this prefix and an event key, once.
	failTransact atomic.Pointer[string]
}

func (r *recordingStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	r.mu.Lock()
	r.bulkGets = append(r.bulkGets, slices.Clone(keys))
	r.mu.Unlock()
	return r.Store.BulkGet(ctx, keys)
}

func (r *recordingStore) Transact(ctx context.Context, ops []statestore.Op) error {
	keys := make([]string, len(ops))
	for i, op := range ops {
		keys[i] = op.Key
	}
	r.mu.Lock()
	r.transact = append(r.transact, keys)
	r.mu.Unlock()
	if p := r.failTransact.Load(); p != nil && hasPrefix(keys, *p) && hasPrefix(keys, "ev|") {
		r.failTransact.Store(nil)
		return errors.New("disk on fire")
	}
	return r.Store.Transact(ctx, ops)
}

func (r *recordingStore) Write(ctx context.Context, op statestore.Op) error {
	r.mu.Lock()
	r.writes = append(r.writes, op.Key)
	r.mu.Unlock()
	return r.Store.Write(ctx, op)
}

// reset forgets what was recorded.
func (r *recordingStore) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bulkGets, r.transact, r.writes = nil, nil, nil
}

func (r *recordingStore) snapshot() (bulkGets, transact [][]string, writes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bulkGets), slices.Clone(r.transact), slices.Clone(r.writes)
}

func hasPrefix(keys []string, prefix string) bool {
	return slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, prefix) })
}

// markersWritten has f's replica write a read marker now, so that those
// of the next second are owed, not due: a materialization with due
// markers does not ride (their writes are guarded).
func markersWritten(t *testing.T, f *fixture) {
	t.Helper()
	r := f.roomWith(t, "zed")
	appendOne(t, f.svc, msg(r.ID, "zed", "warm", "up"))
	quiesce(t, f.svc)
}

func recorded(t *testing.T) (*recordingStore, *fixture) {
	t.Helper()
	store := &recordingStore{Store: memstore.New()}
	pub := &publish.Memory{}
	return store, &fixture{store: store, pub: pub, svc: room.New(store, pub, quiet())}
}

func appendOne(t *testing.T, svc *room.Service, sub events.Submission) room.Outcome {
	t.Helper()
	outs, err := svc.Append(ctx, []events.Submission{sub})
	if err != nil {
		t.Fatalf("append %s: %v", sub.ClientID, err)
	}
	return outs[0]
}

// roundReads returns the round reads among bulkGets: those of a head.
func roundReads(bulkGets [][]string, roomID string) [][]string {
	var out [][]string
	for _, keys := range bulkGets {
		if slices.Contains(keys, "room|"+roomID) {
			out = append(out, keys)
		}
	}
	return out
}

// TestARoundLeavesOutMemberKeysItKnows: once a replica has decided a
// sender's submission, its next round of the room reads the head and the
// idempotency key, not the sender's member record (the head it reads is
// the one it committed, so membership cannot have changed).
func TestARoundLeavesOutMemberKeysItKnows(t *testing.T) {
	store, f := recorded(t)
	r := f.roomWith(t, "alice", "bob")
	appendOne(t, f.svc, msg(r.ID, "alice", "m1", "one"))
	quiesce(t, f.svc)
	store.reset()
	if o := appendOne(t, f.svc, msg(r.ID, "alice", "m2", "two")); o.Seq != 4 {
		t.Fatalf("m2: %+v, want seq 4", o)
	}
	bulkGets, _, _ := store.snapshot()
	reads := roundReads(bulkGets, r.ID)
	if len(reads) != 1 {
		t.Fatalf("round reads %v, want one", reads)
	}
	want := []string{"room|" + r.ID, "idem|" + r.ID + "|alice|m2"}
	if !slices.Equal(reads[0], want) {
		t.Fatalf("the round read %v, want %v (no member key)", reads[0], want)
	}
	for _, keys := range bulkGets {
		if slices.Contains(keys, "member|"+r.ID+"|alice") && len(keys) > 1 {
			t.Fatalf("a member key read with others: %v", keys)
		}
	}
}

// TestAStaleMembershipMemoryIsReadAgain: a leave committed through
// another replica changes the head; the replica that remembers the
// sender as a member finds a head with another last_seq, reads the
// member key after all and refuses the send.
func TestAStaleMembershipMemoryIsReadAgain(t *testing.T) {
	store, f := recorded(t)
	r := f.roomWith(t, "alice", "bob")
	appendOne(t, f.svc, msg(r.ID, "bob", "b1", "hi"))
	quiesce(t, f.svc)
	other := room.New(store, &publish.Memory{}, quiet())
	if err := other.Leave(ctx, "bob", r.ID); err != nil {
		t.Fatal(err)
	}
	store.reset()
	if o := appendOne(t, f.svc, msg(r.ID, "bob", "b2", "still here?")); o.Code != "not_a_member" {
		t.Fatalf("bob's send after leaving through another replica: %+v, want not_a_member", o)
	}
	bulkGets, _, _ := store.snapshot()
	if !slices.ContainsFunc(bulkGets, func(keys []string) bool { return slices.Equal(keys, []string{"member|" + r.ID + "|bob"}) }) {
		t.Fatalf("no second read of bob's member key: %v", bulkGets)
	}
	// And the same through the replica itself: a leave it commits moves
	// the head on as well.
	appendOne(t, f.svc, msg(r.ID, "alice", "a1", "x"))
	if err := f.svc.Leave(ctx, "alice", r.ID); err != nil {
		t.Fatal(err)
	}
	if o := appendOne(t, f.svc, msg(r.ID, "alice", "a2", "y")); o.Code != "not_a_member" {
		t.Fatalf("alice's send after leaving: %+v, want not_a_member", o)
	}
}

// TestMaterializationRidesOnTheNextRound: the events of a committed round
// are written in the next round's head transaction when it comes soon,
// not in a transaction of their own.
func TestMaterializationRidesOnTheNextRound(t *testing.T) {
	store, f := recorded(t)
	f.svc.SetRideWait(2 * time.Second) // the next round surely comes first
	a := f.roomWith(t, "alice")
	b := f.roomWith(t, "bob")
	markersWritten(t, f)
	store.reset()
	appendOne(t, f.svc, msg(a.ID, "alice", "m1", "one")) // seq 2, committed
	eventually(t, "a's events offered", f.svc.RideOffered)
	appendOne(t, f.svc, msg(b.ID, "bob", "m1", "two")) // its round carries a's events
	quiesce(t, f.svc)
	_, transact, writes := store.snapshot()
	if !slices.Contains(writes, "room|"+a.ID) {
		t.Fatalf("a's head was not written alone: writes %v", writes)
	}
	var rode bool
	for _, keys := range transact {
		if slices.Contains(keys, "ev|"+a.ID+"|2") {
			if !slices.Contains(keys, "room|"+b.ID) || !slices.Contains(keys, "idem|"+a.ID+"|alice|m1") {
				t.Fatalf("a's event written in %v, want it with b's head and a's idempotency key", keys)
			}
			rode = true
		}
	}
	if !rode {
		t.Fatalf("a's event never written: transactions %v", transact)
	}
	if _, err := store.Get(ctx, "ev|"+b.ID+"|2"); err != nil {
		t.Fatalf("b's event, with no round after it: %v", err)
	}
}

// TestAQuietRoomIsMaterializedAfterTheIdleDelay: with no round after it,
// a round's events are written alone, once the materializer has waited
// rideWait for one.
func TestAQuietRoomIsMaterializedAfterTheIdleDelay(t *testing.T) {
	store, f := recorded(t)
	f.svc.SetRideWait(300 * time.Millisecond)
	r := f.roomWith(t, "alice")
	markersWritten(t, f)
	store.reset()
	start := time.Now()
	appendOne(t, f.svc, msg(r.ID, "alice", "m1", "one"))
	if _, err := store.Get(ctx, "ev|"+r.ID+"|2"); err == nil && time.Since(start) < 250*time.Millisecond {
		t.Fatal("materialized before the idle delay")
	}
	eventually(t, "the event materialized", func() bool {
		_, err := store.Get(ctx, "ev|"+r.ID+"|2")
		return err == nil
	})
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("materialized after %v, before the idle delay", waited)
	}
	_, transact, _ := store.snapshot()
	for _, keys := range transact {
		if slices.Contains(keys, "ev|"+r.ID+"|2") && hasPrefix(keys, "room|") {
			t.Fatalf("written with a head: %v", keys)
		}
	}
	// The default wait is a few milliseconds.
	f.svc.SetRideWait(3 * time.Millisecond)
	start = time.Now()
	appendOne(t, f.svc, msg(r.ID, "alice", "m2", "two"))
	eventually(t, "the second event materialized", func() bool {
		_, err := store.Get(ctx, "ev|"+r.ID+"|3")
		return err == nil
	})
	if waited := time.Since(start); waited > 200*time.Millisecond {
		t.Fatalf("a quiet room materialized after %v", waited)
	}
}

// TestARideLostWithAFailedRoundIsWrittenAlone: when the head transaction
// that carries a materialization fails (on SQL stores nothing of it
// lands), the materializer writes the events itself, and the next round
// commits on top of the tail it carried.
func TestARideLostWithAFailedRoundIsWrittenAlone(t *testing.T) {
	store, f := recorded(t)
	f.svc.SetRideWait(2 * time.Second)
	a := f.roomWith(t, "alice")
	b := f.roomWith(t, "bob")
	markersWritten(t, f)
	appendOne(t, f.svc, msg(a.ID, "alice", "m1", "one")) // seq 2
	eventually(t, "a's events offered", f.svc.RideOffered)
	prefix := "room|" + b.ID
	store.failTransact.Store(&prefix)
	if _, err := f.svc.Append(ctx, []events.Submission{msg(b.ID, "bob", "m1", "two")}); err == nil {
		t.Fatal("b's round did not fail")
	}
	eventually(t, "a's event written alone", func() bool {
		_, err := store.Get(ctx, "ev|"+a.ID+"|2")
		return err == nil
	})
	if o := appendOne(t, f.svc, msg(b.ID, "bob", "m1", "two")); o.Seq != 2 {
		t.Fatalf("b's retry: %+v, want seq 2", o)
	}
	appendOne(t, f.svc, msg(a.ID, "alice", "m2", "three"))
	quiesce(t, f.svc)
	page, err := f.svc.History(ctx, "alice", a.ID, room.Page{After: 0, HasAfter: true, Limit: 10})
	if err != nil || len(page.Events) != 3 || page.Events[1].ClientID != "m1" || page.Events[2].ClientID != "m2" {
		t.Fatalf("a's history: %+v, %v", page, err)
	}
}

// TestMarkersOfAllRoomsAreWrittenTogether: the owed read markers of every
// room go in one read and one transaction, not one per room.
func TestMarkersOfAllRoomsAreWrittenTogether(t *testing.T) {
	store, f := recorded(t)
	a := f.roomWith(t, "alice")
	b := f.roomWith(t, "alice")
	// The first marker is written at once; those within the next second
	// are owed, whichever room they are in.
	appendOne(t, f.svc, msg(a.ID, "alice", "m1", "x"))
	quiesce(t, f.svc)
	store.reset()
	appendOne(t, f.svc, msg(a.ID, "alice", "m2", "x"))
	appendOne(t, f.svc, msg(b.ID, "alice", "m1", "x"))
	eventually(t, "both markers written", func() bool {
		return storedReadSeq(t, store, a.ID, "alice") == 3 && storedReadSeq(t, store, b.ID, "alice") == 2
	})
	_, transact, writes := store.snapshot()
	both := func(keys []string) bool {
		return slices.Contains(keys, "member|"+a.ID+"|alice") && slices.Contains(keys, "member|"+b.ID+"|alice")
	}
	if !slices.ContainsFunc(transact, both) {
		t.Fatalf("markers not written together: transactions %v, writes %v", transact, writes)
	}
}

// slowReadStore holds a round's read of a room's head for a while.
type slowReadStore struct {
	statestore.Store
	hold    atomic.Pointer[string] // the head key whose BulkGet is held
	held    chan struct{}
	release chan struct{}
	writes  atomic.Int32 // guarded writes of the held head
}

func (s *slowReadStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	items, err := s.Store.BulkGet(ctx, keys)
	if p := s.hold.Load(); p != nil && slices.Contains(keys, *p) && len(keys) > 1 && s.hold.CompareAndSwap(p, nil) {
		close(s.held)
		<-s.release
	}
	return items, err
}

func (s *slowReadStore) Write(ctx context.Context, op statestore.Op) error {
	err := s.Store.Write(ctx, op)
	println("DEBUG write", op.Key, fmt.Sprint(err))
	if strings.HasPrefix(op.Key, "room|") && errors.Is(err, statestore.ErrConflict) {
		s.writes.Add(1)
	}
	return err
}

func (s *slowReadStore) Transact(ctx context.Context, ops []statestore.Op) error {
	err := s.Store.Transact(ctx, ops)
	if len(ops) > 0 && strings.HasPrefix(ops[0].Key, "room|") && errors.Is(err, statestore.ErrConflict) {
		s.writes.Add(1)
	}
	return err
}

// TestACompactionWaitsForTheRunningRound: a compaction that comes due
// while a round of the replica has read the room's head does not write it
// under the round (the round's guarded write would lose, and every head
// of its transaction be written one by one): it waits for a moment
// without rounds, and the round commits at the first try.
func TestACompactionWaitsForTheRunningRound(t *testing.T) {
	store := &slowReadStore{Store: memstore.New(), held: make(chan struct{}), release: make(chan struct{})}
	f := &fixture{store: store, pub: &publish.Memory{}}
	f.svc = room.New(store, f.pub, quiet())
	r := f.roomWith(t, "alice")
	consume(t, f.svc, burst(r.ID, "alice", "b", 60)...) // a tail to compact, 100 ms on
	key := "room|" + r.ID
	store.hold.Store(&key)
	done := make(chan room.Outcome)
	go func() {
		outs, err := f.svc.Append(ctx, []events.Submission{msg(r.ID, "alice", "late", "x"), msg(r.ID, "bob", "nobody", "y")})
		if err != nil {
			t.Error(err)
		}
		done <- outs[0]
	}()
	<-store.held
	time.Sleep(300 * time.Millisecond) // the compaction comes due meanwhile
	close(store.release)
	if o := <-done; o.Seq != 62 {
		t.Fatalf("the round's send: %+v, want seq 62", o)
	}
	if n := store.writes.Load(); n != 0 {
		t.Fatalf("%d head writes lost an ETag race", n)
	}
	quiesce(t, f.svc)
	got := history(t, f.svc, "alice", r.ID, room.Page{HasAfter: true, Limit: 200})
	checkGapFree(t, got.Events, 1)
}
