package room_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// storedReadSeq reads a member record's read_seq from the store itself.
func storedReadSeq(t *testing.T, store statestore.Store, roomID, userID string) int64 {
	t.Helper()
	it, err := store.Get(ctx, "member|"+roomID+"|"+url.QueryEscape(userID))
	if err != nil {
		t.Fatalf("member record of %s: %v", userID, err)
	}
	var m struct {
		ReadSeq int64 `json:"read_seq"`
	}
	if err := json.Unmarshal(it.Value, &m); err != nil {
		t.Fatal(err)
	}
	return m.ReadSeq
}

// TestSendersMarkersAreWrittenAtMostEverySecond: a sender's messages are
// never unread for them, at once (the marker is in the head's tail), and
// the marker reaches the member record without a further message, within
// about a second, not one write per message.
func TestSendersMarkersAreWrittenAtMostEverySecond(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob") // seqs 1, 2
	for i := range 5 {
		if err := f.svc.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{msg(r.ID, "alice", string(rune('a'+i)), "hello")}}); err != nil {
			t.Fatal(err)
		}
		mine, err := f.svc.Mine(ctx, "alice")
		if err != nil || len(mine) != 1 || mine[0].Unread != 0 || mine[0].ReadSeq != int64(3+i) {
			t.Fatalf("alice after sending seq %d: %+v, %v; want read_seq %d and nothing unread", 3+i, mine, err, 3+i)
		}
	}
	eventually(t, "alice's marker in her member record", func() bool { return storedReadSeq(t, f.store, r.ID, "alice") == 7 })
	if got := storedReadSeq(t, f.store, r.ID, "bob"); got != 2 {
		t.Fatalf("bob's marker moved to %d by alice's messages", got)
	}
}

// TestMarkersOwedByAStoppedReplicaAreWrittenByTheNext: a replica that
// stops before writing its owed markers leaves them in the head's tail;
// the next replica to write the room moves them, and the unread count
// shows them meanwhile.
func TestMarkersOwedByAStoppedReplicaAreWrittenByTheNext(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob") // seqs 1, 2
	// The room's first marker is written at once; the next, within the
	// second, is owed.
	consume(t, f.svc, msg(r.ID, "alice", "m1", "x"))
	if err := f.svc.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{msg(r.ID, "alice", "m2", "x")}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second message materialized", func() bool {
		_, err := f.store.Get(ctx, "ev|"+r.ID+"|4")
		return err == nil
	})
	if got := storedReadSeq(t, f.store, r.ID, "alice"); got != 3 {
		t.Fatalf("alice's stored marker is %d, want 3: the second should be owed", got)
	}
	// Another replica takes over; the first writes nothing more (it is
	// never used again; its timer may still fire, so the check below is
	// done before a second passes).
	next := room.New(f.store, &publish.Memory{}, quiet())
	mine, err := next.Mine(ctx, "alice")
	if err != nil || len(mine) != 1 || mine[0].Unread != 0 || mine[0].ReadSeq != 4 {
		t.Fatalf("alice through the next replica: %+v, %v; want read_seq 4 and nothing unread", mine, err)
	}
	consume(t, next, msg(r.ID, "bob", "b1", "y"))
	if got := storedReadSeq(t, f.store, r.ID, "alice"); got != 4 {
		t.Fatalf("alice's marker in the store is %d after the next replica wrote the room, want 4", got)
	}
}
