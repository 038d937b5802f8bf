package room_test

import (
	"errors"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// TestScrollbackPagesShareARecentHead: a member's pages below a known seq
// read the room's head once per ScrollbackTTL and serve exactly the
// events a fresh read would; a page reaching above the cached head, and
// every other read, reads the head from the store.
func TestScrollbackPagesShareARecentHead(t *testing.T) {
	base := memstore.New()
	store := &readCounter{Store: base, prefix: "room|"}
	svc := room.New(store, &publish.Memory{}, quiet())
	other := room.New(base, &publish.Memory{}, quiet()) // a second replica
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Join(ctx, "bob", r.ID); err != nil {
		t.Fatal(err)
	}
	consume(t, other, burst(r.ID, "alice", "a", 100)...) // seqs 3–102

	page := func(user string, before int64) api.EventsResponse {
		t.Helper()
		return history(t, svc, user, r.ID, room.Page{HasBefore: true, Before: before, Limit: 20})
	}
	first := page("bob", 103)
	reads := store.n.Load()
	for before := int64(83); before > 3; before -= 20 {
		got := page("bob", before)
		checkGapFree(t, got.Events, max(1, before-20))
		if got.Events[len(got.Events)-1].Seq != before-1 || got.LastSeq != 102 {
			t.Fatalf("page below %d: last event %d, last_seq %d", before, got.Events[len(got.Events)-1].Seq, got.LastSeq)
		}
	}
	if n := store.n.Load() - reads; n != 0 {
		t.Fatalf("scrollback below a cached head read the head %d more times", n)
	}
	if first.Events[19].Seq != 102 {
		t.Fatalf("first page ends at %d", first.Events[19].Seq)
	}

	// Another replica appends: a page reaching above the cached head
	// (the reader heard of seq 103 live) reads the head again and holds it.
	consume(t, other, msg(r.ID, "bob", "new", "newer than the cached head"))
	got := page("bob", 104)
	if got.LastSeq != 103 || got.Events[19].Text != "newer than the cached head" {
		t.Fatalf("a page above the cached head: last_seq %d, last event %+v", got.LastSeq, got.Events[19])
	}
	reads = store.n.Load()
	history(t, svc, "bob", r.ID, room.Page{HasAfter: true, After: 90, Limit: 20})
	history(t, svc, "bob", r.ID, room.Page{Limit: 20})
	if n := store.n.Load() - reads; n != 2 {
		t.Fatalf("an after= read and a latest-page read read the head %d times, want 2", n)
	}

	// The cache admits only whom it checked: a stranger is refused, and
	// a member's first page reads the head.
	if _, err := svc.History(ctx, "mallory", r.ID, room.Page{HasBefore: true, Before: 50, Limit: 20}); !isCode(err, "not_a_member") {
		t.Fatalf("a non-member's scrollback: %v", err)
	}

	// After ScrollbackTTL the head is read again.
	time.Sleep(room.ScrollbackTTL + 100*time.Millisecond)
	reads = store.n.Load()
	page("bob", 50)
	if n := store.n.Load() - reads; n != 1 {
		t.Fatalf("a page after the TTL read the head %d times, want 1", n)
	}
}

// TestLeavingEndsScrollback: a member who leaves through this replica is
// refused at once; through another one, within ScrollbackTTL.
func TestLeavingEndsScrollback(t *testing.T) {
	base := memstore.New()
	svc := room.New(base, &publish.Memory{}, quiet())
	other := room.New(base, &publish.Memory{}, quiet())
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, err := svc.Join(ctx, u, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	consume(t, svc, burst(r.ID, "alice", "a", 30)...)
	scroll := func(user string) error {
		_, err := svc.History(ctx, user, r.ID, room.Page{HasBefore: true, Before: 20, Limit: 10})
		return err
	}
	for _, u := range []string{"bob", "carol"} {
		if err := scroll(u); err != nil {
			t.Fatal(err)
		}
	}

	if err := svc.Leave(ctx, "bob", r.ID); err != nil {
		t.Fatal(err)
	}
	if err := scroll("bob"); !isCode(err, "not_a_member") {
		t.Fatalf("bob left through this replica and still scrolls back: %v", err)
	}

	if err := scroll("carol"); err != nil {
		t.Fatal(err)
	}
	if err := other.Leave(ctx, "carol", r.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(room.ScrollbackTTL + 100*time.Millisecond)
	for {
		err := scroll("carol")
		if isCode(err, "not_a_member") {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol left through another replica %s ago and still scrolls back", room.ScrollbackTTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isCode(err error, code string) bool {
	var e *apierror.Error
	return errors.As(err, &e) && e.Code == code
}
