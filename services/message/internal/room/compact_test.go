package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// rawHead is what a test reads of a stored room head.
type rawHead struct {
	LastSeq int64 `json:"last_seq"`
	Tail    struct {
		Events []json.RawMessage `json:"events"`
		Marks  []struct {
			UserID string `json:"user_id"`
			Seq    int64  `json:"seq"`
		} `json:"marks"`
	} `json:"tail"`
}

func readHead(t *testing.T, store statestore.Store, roomID string) (rawHead, int) {
	t.Helper()
	it, err := store.Get(ctx, "room|"+roomID)
	if err != nil {
		t.Fatal(err)
	}
	var h rawHead
	if err := json.Unmarshal(it.Value, &h); err != nil {
		t.Fatal(err)
	}
	return h, len(it.Value)
}

func burst(roomID, sender, prefix string, n int) []events.Submission {
	subs := make([]events.Submission, n)
	for i := range subs {
		subs[i] = msg(roomID, sender, fmt.Sprint(prefix, i), fmt.Sprint("message number ", i, " of a burst into the room"))
	}
	return subs
}

// TestABurstIsCompactedFromTheHead: a large batch is committed as the
// head's tail, then, once materialized, emptied from the head, so reads of
// the head stay small; every event is still served, in order, and a
// redelivery still acks its original seq. A small batch keeps its tail
// (compacting it would cost the append path a write for nothing).
func TestABurstIsCompactedFromTheHead(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob")

	consume(t, f.svc, msg(r.ID, "alice", "small", "hi"))
	if h, _ := readHead(t, f.store, r.ID); len(h.Tail.Events) != 1 {
		t.Fatalf("a one-message batch left %d events in the head's tail, want 1", len(h.Tail.Events))
	}

	consume(t, f.svc, burst(r.ID, "alice", "b", 60)...)
	if h, _ := readHead(t, f.store, r.ID); len(h.Tail.Events) != 60 {
		t.Fatalf("right after the burst the head holds %d tail events, want its 60", len(h.Tail.Events))
	}
	var h rawHead
	var size int
	eventually(t, "the burst to be compacted from the head", func() bool {
		h, size = readHead(t, f.store, r.ID)
		return len(h.Tail.Events) == 0
	})
	if h.LastSeq != 63 {
		t.Fatalf("last_seq %d, want 63 (2 joins, 1 + 60 messages)", h.LastSeq)
	}
	if size > 1024 {
		t.Fatalf("the compacted head is %d bytes", size)
	}
	// The sender's read mark stays in the compacted head: until it is in
	// alice's member record, the head is where it is durable.
	if len(h.Tail.Marks) != 1 || h.Tail.Marks[0].UserID != "alice" || h.Tail.Marks[0].Seq != 63 {
		t.Fatalf("the compacted head's marks are %+v, want alice's at 63", h.Tail.Marks)
	}

	got := history(t, f.svc, "bob", r.ID, room.Page{HasAfter: true, Limit: 200})
	checkGapFree(t, got.Events, 1)
	if len(got.Events) != 63 || got.Events[62].Text != "message number 59 of a burst into the room" {
		t.Fatalf("history after compaction: %d events, last %+v", len(got.Events), got.Events[len(got.Events)-1])
	}
	// The unread count and marker moved by the burst are materialized.
	rooms, err := f.svc.Mine(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 1 || rooms[0].LastSeq != 63 || rooms[0].Unread != 61 {
		t.Fatalf("bob's room list after compaction: %+v", rooms)
	}

	before := len(batches(t, f.pub))
	consume(t, f.svc, msg(r.ID, "alice", "b7", "redelivered"))
	all := batches(t, f.pub)
	// The stored event comes again (from its key: the head's tail is
	// gone), with the text first stored, not the redelivery's.
	if len(all) != before+1 || len(all[before].Acks) != 1 || all[before].Acks[0].Seq != 11 ||
		len(all[before].Events) != 1 || all[before].Events[0].Seq != 11 || all[before].Events[0].Text != "message number 7 of a burst into the room" {
		t.Fatalf("redelivery after compaction announced %+v, want the stored event 11 again and its ack", all[before:])
	}
	if h, _ := readHead(t, f.store, r.ID); h.LastSeq != 63 {
		t.Fatalf("a redelivery appended: last_seq %d", h.LastSeq)
	}
}

// TestCompactionNeverDropsANewerTail: another replica commits between the
// compaction's read of the head and its write. The write is refused (the
// head's ETag moved) and the newer tail stays: nothing it holds is lost
// even though nobody materialized it yet.
func TestCompactionNeverDropsANewerTail(t *testing.T) {
	base := memstore.New()
	other := room.New(failingTransact{base}, &publish.Memory{}, quiet()) // commits, never materializes
	var once sync.Once
	racing := &hookStore{Store: base, beforeWrite: func(op statestore.Op) {
		if !strings.HasPrefix(op.Key, "room|") || strings.Contains(string(op.Value), `"events"`) {
			return // not a compaction
		}
		once.Do(func() {
			roomID := strings.TrimPrefix(op.Key, "room|")
			if err := other.Consume(context.Background(), events.SubmissionBatch{Submissions: []events.Submission{
				msg(roomID, "alice", "late", "committed while the head was being compacted"),
			}}); err != nil {
				t.Errorf("the other replica's append: %v", err)
			}
		})
	}}
	svc := room.New(racing, &publish.Memory{}, quiet())
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, svc, burst(r.ID, "alice", "b", 40)...)
	eventually(t, "a compaction that races another replica's commit", func() bool {
		h, _ := readHead(t, base, r.ID)
		return h.LastSeq == 42
	})
	time.Sleep(50 * time.Millisecond) // the compaction's own write, refused

	h, _ := readHead(t, base, r.ID)
	if h.LastSeq != 42 || len(h.Tail.Events) != 1 {
		t.Fatalf("head after the race: last_seq %d with %d tail events, want 42 with the late message's tail", h.LastSeq, len(h.Tail.Events))
	}
	got := history(t, svc, "alice", r.ID, room.Page{HasAfter: true, Limit: 200})
	checkGapFree(t, got.Events, 1)
	if len(got.Events) != 42 || got.Events[41].Text != "committed while the head was being compacted" {
		t.Fatalf("history after the race: %d events, last %+v", len(got.Events), got.Events[len(got.Events)-1])
	}
}

// hookStore runs beforeWrite before each single write.
type hookStore struct {
	statestore.Store
	beforeWrite func(statestore.Op)
}

func (h *hookStore) Write(ctx context.Context, op statestore.Op) error {
	h.beforeWrite(op)
	return h.Store.Write(ctx, op)
}

// TestABusyRoomIsNotCompacted: a commit within compactAfter of a burst
// replaces its tail; no compaction is written for a tail already replaced.
func TestABusyRoomIsNotCompacted(t *testing.T) {
	var compactions atomic.Int64
	base := memstore.New()
	store := &hookStore{Store: base, beforeWrite: func(op statestore.Op) {
		if strings.HasPrefix(op.Key, "room|") && !strings.Contains(string(op.Value), `"events"`) {
			compactions.Add(1)
		}
	}}
	svc := room.New(store, &publish.Memory{}, quiet())
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		consume(t, svc, burst(r.ID, "alice", fmt.Sprint("b", i, "-"), 40)...)
	}
	consume(t, svc, msg(r.ID, "alice", "last", "a small batch closes the burst"))
	time.Sleep(300 * time.Millisecond)
	if n := compactions.Load(); n != 0 {
		t.Fatalf("a room that kept committing was compacted %d times", n)
	}
	if h, _ := readHead(t, base, r.ID); len(h.Tail.Events) != 1 {
		t.Fatalf("the head holds %d tail events, want the last small batch", len(h.Tail.Events))
	}
}

// eventually waits up to 2 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
