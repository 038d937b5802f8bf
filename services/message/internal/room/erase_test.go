package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

func edit(roomID, sender, clientID, text string, target int64) events.Submission {
	return events.Submission{Type: api.EventEdit, RoomID: roomID, SenderID: sender, ClientID: clientID, Text: text, TargetSeq: target}
}

func del(roomID, sender, clientID string, target int64) events.Submission {
	return events.Submission{Type: api.EventDelete, RoomID: roomID, SenderID: sender, ClientID: clientID, TargetSeq: target}
}

// storedWith returns the keys of roomID (its head and every event key up
// to its last seq) whose stored value contains text.
func storedWith(t *testing.T, store statestore.Store, roomID, text string) []string {
	t.Helper()
	h, _ := readHead(t, store, roomID)
	keys := []string{"room|" + roomID}
	for seq := int64(1); seq <= h.LastSeq; seq++ {
		keys = append(keys, fmt.Sprintf("ev|%s|%d", roomID, seq))
	}
	items, err := store.BulkGet(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	var with []string
	for _, it := range items {
		if strings.Contains(string(it.Value), text) {
			with = append(with, it.Key)
		}
	}
	return with
}

// deleteErases checks, on store, that deleting a message erases its text
// and its edits' text from storage, whether the delete comes in a later
// batch or in the batch that sent or edited the message.
func deleteErases(t *testing.T, store statestore.Store) {
	t.Helper()
	svc := room.New(store, &publish.Memory{}, quiet())
	r, err := svc.Create(ctx, "alice", "erasure", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	// Later batches: message (seq 2), two edits (3, 4), an unrelated
	// message (5), the delete (6).
	consume(t, svc, msg(r.ID, "alice", "m", "secret-one"))
	consume(t, svc, edit(r.ID, "alice", "e1", "secret-one, edited", 2))
	consume(t, svc, edit(r.ID, "alice", "e2", "secret-one, edited again", 2))
	consume(t, svc, msg(r.ID, "alice", "keep", "kept"))
	if got := storedWith(t, store, r.ID, "secret-one"); len(got) != 3 {
		t.Fatalf("before the delete the text is in %v, want the message and its two edits", got)
	}
	consume(t, svc, del(r.ID, "alice", "d", 2))
	if got := storedWith(t, store, r.ID, "secret-one"); len(got) != 0 {
		t.Fatalf("deleted text still stored in %v", got)
	}
	// One batch: a message (7), its edit (8) and its delete (9).
	consume(t, svc, msg(r.ID, "alice", "m2", "secret-two"), edit(r.ID, "alice", "e3", "secret-two, edited", 7), del(r.ID, "alice", "d2", 7))
	if got := storedWith(t, store, r.ID, "secret-two"); len(got) != 0 {
		t.Fatalf("text deleted in its own batch is stored in %v", got)
	}
	if got := storedWith(t, store, r.ID, "kept"); len(got) != 1 {
		t.Fatalf("the message nobody deleted is stored in %v, want its event key", got)
	}
	evs := history(t, svc, "alice", r.ID, room.Page{}).Events
	if len(evs) != 9 || evs[4].Text != "kept" {
		t.Fatalf("history after the deletes: %+v", evs)
	}
	for _, e := range evs {
		if strings.Contains(e.Text, "secret") {
			t.Errorf("history serves deleted text: %+v", e)
		}
	}
}

func TestADeleteErasesTheTextFromStorage(t *testing.T) {
	for name, store := range map[string]statestore.Store{"atomic": memstore.New(), "non-atomic": nonAtomic{memstore.New()}} {
		t.Run(name, func(t *testing.T) { deleteErases(t, store) })
	}
}

// stallingStore holds back the first transaction that writes key until
// released, as a replica that stalls in the middle of materializing would.
type stallingStore struct {
	statestore.Store
	key     string
	once    sync.Once
	stalled chan struct{} // closed when the transaction is held
	release chan struct{}
}

func (s *stallingStore) Transact(ctx context.Context, ops []statestore.Op) error {
	for _, op := range ops {
		if op.Key == s.key {
			hold := false
			s.once.Do(func() { hold = true })
			if hold {
				close(s.stalled)
				<-s.release
			}
			break
		}
	}
	return s.Store.Transact(ctx, ops)
}

// staleWriteAfterDelete plays the race the second erase and the repair
// exist for: replica A commits a message, then stalls in materializing it;
// replica B materializes it, commits its delete and erases the text; then
// A's stalled write lands and puts the text back. It returns the room id
// once the text is back in storage.
func staleWriteAfterDelete(t *testing.T, base statestore.Store, b *room.Service) string {
	t.Helper()
	r, err := b.Create(ctx, "alice", "race", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	stalling := &stallingStore{Store: base, key: fmt.Sprintf("ev|%s|2", r.ID), stalled: make(chan struct{}), release: make(chan struct{})}
	a := room.New(stalling, &publish.Memory{}, quiet())
	done := make(chan error, 1)
	go func() {
		done <- a.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{msg(r.ID, "alice", "m", "secret")}})
	}()
	<-stalling.stalled // A committed seq 2 and is writing its event key
	consume(t, b, del(r.ID, "alice", "d", 2))
	if got := storedWith(t, base, r.ID, "secret"); len(got) != 0 {
		t.Fatalf("deleted text stored in %v right after the delete", got)
	}
	close(stalling.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	quiesce(t, a)
	if got := storedWith(t, base, r.ID, "secret"); len(got) != 1 {
		t.Fatalf("the stalled write did not put the text back (stored in %v): the race was not played", got)
	}
	return r.ID
}

// TestAStalledMaterializationIsErasedAgain: the replica that erased a
// deleted message's text erases it again later, after any stalled write
// of it.
func TestAStalledMaterializationIsErasedAgain(t *testing.T) {
	base := memstore.New()
	b := room.New(base, &publish.Memory{}, quiet())
	b.SetEraseAgain(300 * time.Millisecond)
	id := staleWriteAfterDelete(t, base, b)
	eventually(t, "the second erase", func() bool { return len(storedWith(t, base, id, "secret")) == 0 })
}

// TestHistoryRepairsTextThatADeleteLeft: a history read that meets stored
// text of a deleted message erases it, even when the replica that should
// erase it again is gone.
func TestHistoryRepairsTextThatADeleteLeft(t *testing.T) {
	base := memstore.New()
	b := room.New(base, &publish.Memory{}, quiet())
	b.SetEraseAgain(time.Hour) // as if B had stopped
	id := staleWriteAfterDelete(t, base, b)
	time.Sleep(100 * time.Millisecond)
	if got := storedWith(t, base, id, "secret"); len(got) != 1 {
		t.Fatalf("text stored in %v before any read", got)
	}
	reader := room.New(base, &publish.Memory{}, quiet())
	for _, e := range history(t, reader, "alice", id, room.Page{}).Events {
		if e.Text == "secret" {
			t.Fatalf("history served deleted text: %+v", e)
		}
	}
	eventually(t, "the repair", func() bool { return len(storedWith(t, base, id, "secret")) == 0 })
}

// TestHistoryRepairsAnEditOutsideTheIndex: an edit stored before the
// edits index existed is not erased with its deleted message, but the
// first history read that meets it erases it.
func TestHistoryRepairsAnEditOutsideTheIndex(t *testing.T) {
	store := memstore.New()
	svc := room.New(store, &publish.Memory{}, quiet())
	r, err := svc.Create(ctx, "alice", "legacy", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, svc, msg(r.ID, "alice", "m", "secret"))
	consume(t, svc, edit(r.ID, "alice", "e", "secret, edited", 2))
	consume(t, svc, msg(r.ID, "alice", "n", "next")) // the edit leaves the head's tail
	if err := store.Write(ctx, statestore.Op{Key: fmt.Sprintf("edits|%s|2", r.ID), Delete: true}); err != nil {
		t.Fatal(err)
	}
	consume(t, svc, del(r.ID, "alice", "d", 2))
	if got := storedWith(t, store, r.ID, "secret"); len(got) != 1 || got[0] != fmt.Sprintf("ev|%s|3", r.ID) {
		t.Fatalf("text stored in %v, want the unindexed edit alone", got)
	}
	reader := room.New(store, &publish.Memory{}, quiet())
	for _, e := range history(t, reader, "alice", r.ID, room.Page{}).Events {
		if strings.Contains(e.Text, "secret") {
			t.Fatalf("history served deleted text: %+v", e)
		}
	}
	eventually(t, "the repair of the edit", func() bool { return len(storedWith(t, store, r.ID, "secret")) == 0 })
}

// rawHeadMap reads roomID's stored head as a generic map.
func rawHeadMap(t *testing.T, store statestore.Store, roomID string) map[string]any {
	t.Helper()
	it, err := store.Get(ctx, "room|"+roomID)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(it.Value, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAnOldDeleteLeavesTheHeadErasedForGood: a delete stays in the room
// head for keepDeletes; the first commit after that erases its text once
// more (here: text a stalled write had put back) and drops it from the
// head. The message stays hidden everywhere: in storage, in a replica that
// cached it before the delete, and to edits and deletes of it.
func TestAnOldDeleteLeavesTheHeadErasedForGood(t *testing.T) {
	store := memstore.New()
	clock := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	pub := &publish.Memory{}
	svc := room.New(store, pub, quiet())
	svc.SetNow(now)
	other := room.New(store, &publish.Memory{}, quiet()) // a replica that read the room before the delete
	other.SetNow(now)
	r, err := svc.Create(ctx, "alice", "old deletes", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, svc, msg(r.ID, "alice", "m", "secret"))             // seq 2
	consume(t, svc, edit(r.ID, "alice", "e", "secret, edited", 2)) // seq 3
	consume(t, svc, msg(r.ID, "alice", "k", "kept"))               // seq 4
	original, err := store.Get(ctx, fmt.Sprintf("ev|%s|2", r.ID))  // what a stalled write would put back
	if err != nil {
		t.Fatal(err)
	}
	if got := history(t, other, "alice", r.ID, room.Page{}).Events; got[1].Text != "secret" {
		t.Fatalf("before the delete: %+v", got[1])
	}
	consume(t, svc, del(r.ID, "alice", "d", 2)) // seq 5
	if d, _ := rawHeadMap(t, store, r.ID)["deletes"].([]any); len(d) != 1 {
		t.Fatalf("the head holds deletes %v, want the one", d)
	}
	consume(t, svc, msg(r.ID, "alice", "k2", "kept too")) // seq 6: the delete leaves the head's tail
	if err := store.Write(ctx, statestore.Op{Key: original.Key, Value: original.Value}); err != nil {
		t.Fatal(err)
	}

	clock = clock.Add(11 * time.Minute)
	consume(t, svc, msg(r.ID, "alice", "n", "next")) // seq 7: drops the delete, erasing first
	if d, ok := rawHeadMap(t, store, r.ID)["deletes"]; ok {
		t.Fatalf("the head still holds deletes %v", d)
	}
	if got := storedWith(t, store, r.ID, "secret"); len(got) != 0 {
		t.Fatalf("deleted text stored in %v after the delete left the head", got)
	}
	for _, s := range []*room.Service{svc, other} {
		for _, e := range history(t, s, "alice", r.ID, room.Page{}).Events {
			if strings.Contains(e.Text, "secret") {
				t.Fatalf("history serves deleted text: %+v", e)
			}
		}
	}
	// Without the delete in the head, its message is still known deleted.
	consume(t, svc, edit(r.ID, "alice", "e2", "back again", 2), del(r.ID, "alice", "d2", 2))
	bs := batches(t, pub)
	last := bs[len(bs)-1]
	if len(last.Events) != 0 || len(last.Rejections) != 2 || last.Rejections[0].Code != "message_deleted" || last.Rejections[1].Code != "message_deleted" {
		t.Fatalf("edit and delete of a message deleted long ago: %+v", last)
	}
}

// clockedRoom starts a Service on a fresh store whose clock is *clock
// (moved by the test) and creates a public room of alice's in it.
func clockedRoom(t *testing.T, name string) (statestore.Store, *time.Time, *room.Service, api.Room) {
	t.Helper()
	store := memstore.New()
	clock := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	svc := room.New(store, &publish.Memory{}, quiet())
	svc.SetNow(func() time.Time { return clock })
	r, err := svc.Create(ctx, "alice", name, api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	return store, &clock, svc, r
}

// TestACommitDropsAtMostMaxTrimsDeletes: many old deletes leave the head a
// bounded number per commit, oldest first.
func TestACommitDropsAtMostMaxTrimsDeletes(t *testing.T) {
	store, clock, svc, r := clockedRoom(t, "many deletes")
	consume(t, svc, burst(r.ID, "alice", "m", 20)...) // seqs 2 … 21
	subs := make([]events.Submission, 20)
	for i := range subs {
		subs[i] = del(r.ID, "alice", fmt.Sprint("d", i), int64(2+i))
	}
	consume(t, svc, subs...)
	deletes := func() int {
		d, _ := rawHeadMap(t, store, r.ID)["deletes"].([]any)
		return len(d)
	}
	if n := deletes(); n != 20 {
		t.Fatalf("the head holds %d deletes, want 20", n)
	}
	*clock = clock.Add(11 * time.Minute)
	consume(t, svc, msg(r.ID, "alice", "x", "one"))
	if n := deletes(); n != 4 {
		t.Fatalf("after one commit the head holds %d deletes, want 20 - 16", n)
	}
	consume(t, svc, msg(r.ID, "alice", "y", "two"))
	if n := deletes(); n != 0 {
		t.Fatalf("after two commits the head holds %d deletes, want none", n)
	}
	if got := storedWith(t, store, r.ID, "burst"); len(got) != 0 {
		t.Fatalf("deleted text stored in %v", got)
	}
}

// TestDeletesFromBeforeTheirTimesStay: a head written before deletes
// carried their time lists them in "deleted"; they keep hiding their
// messages and never leave (their edits may not be indexed).
func TestDeletesFromBeforeTheirTimesStay(t *testing.T) {
	store, clock, svc, r := clockedRoom(t, "legacy")
	consume(t, svc, msg(r.ID, "alice", "m", "legacy secret"))    // seq 2
	consume(t, svc, msg(r.ID, "alice", "n", "the next message")) // seq 3
	head := rawHeadMap(t, store, r.ID)
	head["deleted"] = []int64{2}
	b, _ := json.Marshal(head)
	if err := store.Write(ctx, statestore.Op{Key: "room|" + r.ID, Value: b}); err != nil {
		t.Fatal(err)
	}
	*clock = clock.Add(time.Hour)
	consume(t, svc, msg(r.ID, "alice", "o", "later"))
	if d, _ := rawHeadMap(t, store, r.ID)["deleted"].([]any); len(d) != 1 {
		t.Fatalf("the head's legacy deletes are %v, want seq 2 kept", d)
	}
	reader := room.New(store, &publish.Memory{}, quiet())
	if got := history(t, reader, "alice", r.ID, room.Page{}).Events; len(got) != 4 || got[1].Text != "" || got[2].Text != "the next message" {
		t.Fatalf("history with a legacy delete: %+v", got)
	}
}
