package room_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// A new room's log starts with its founders' member_joined events: the
// creator's at seq 1 (and a DM's second member's at seq 2), announced on
// room.events like any appended event, so ws replicas route the room to
// the founders' open sockets at once.

// checkJoin fails unless e is the member_joined of user at seq, sent by sender.
func checkJoin(t *testing.T, e api.Event, roomID string, seq int64, user, sender string) {
	t.Helper()
	if e.RoomID != roomID || e.Seq != seq || e.Type != api.EventMemberJoined || e.UserID != user || e.SenderID != sender ||
		e.ID == "" || e.CreatedAt.IsZero() || e.Text != "" || e.ClientID != "" {
		t.Fatalf("event %+v, want member_joined of %s at seq %d in %s, sent by %s", e, user, seq, roomID, sender)
	}
}

// roomBatches returns the batches announced for roomID by any of pubs.
func roomBatches(t *testing.T, roomID string, pubs ...*publish.Memory) []events.RoomEventBatch {
	t.Helper()
	var out []events.RoomEventBatch
	for _, p := range pubs {
		for _, b := range batches(t, p) {
			if b.RoomID == roomID {
				out = append(out, b)
			}
		}
	}
	return out
}

// markers returns userID's read_seq and unread in roomID from its room list.
func markers(t *testing.T, svc *room.Service, userID, roomID string) (readSeq, unread int64) {
	t.Helper()
	mine, err := svc.Mine(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range mine {
		if r.ID == roomID {
			return r.ReadSeq, r.Unread
		}
	}
	t.Fatalf("%s's rooms %+v lack %s", userID, mine, roomID)
	return 0, 0
}

func TestCreateLogsTheCreatorsJoinAndAnnouncesIt(t *testing.T) {
	for _, kind := range []string{api.RoomPublic, api.RoomPrivate} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			r, err := f.svc.Create(ctx, "alice", "x", kind)
			if err != nil {
				t.Fatal(err)
			}
			if r.LastSeq != 1 {
				t.Fatalf("created room last_seq = %d, want 1", r.LastSeq)
			}
			got := history(t, f.svc, "alice", r.ID, room.Page{})
			if len(got.Events) != 1 || got.LastSeq != 1 {
				t.Fatalf("log of a new room = %+v, want alice's member_joined alone", got)
			}
			checkJoin(t, got.Events[0], r.ID, 1, "alice", "alice")
			if !got.Events[0].CreatedAt.Equal(r.CreatedAt) {
				t.Errorf("member_joined at %v, room created at %v", got.Events[0].CreatedAt, r.CreatedAt)
			}
			bs := batches(t, f.pub)
			if len(bs) != 1 || bs[0].RoomID != r.ID || len(bs[0].Events) != 1 || len(bs[0].Acks)+len(bs[0].Rejections) != 0 {
				t.Fatalf("announced %+v, want one batch with the creator's member_joined", bs)
			}
			checkJoin(t, bs[0].Events[0], r.ID, 1, "alice", "alice")

			// The first message follows the founding event, which its batch
			// carries again (in case the founding announcement was lost).
			consume(t, f.svc, msg(r.ID, "alice", "m", "first"))
			got = history(t, f.svc, "alice", r.ID, room.Page{})
			checkGapFree(t, got.Events, 1)
			if len(got.Events) != 2 || got.Events[1].Text != "first" {
				t.Fatalf("log after the first message = %+v", got.Events)
			}
			bs = batches(t, f.pub)
			if len(bs) != 2 || len(bs[1].Events) != 2 || bs[1].Events[1].Text != "first" {
				t.Fatalf("announced %+v, want the founding join again, then the message", bs)
			}
			checkJoin(t, bs[1].Events[0], r.ID, 1, "alice", "alice")
			announced := received(bs)
			checkGapFree(t, announced, 1)
			if len(announced) != 2 {
				t.Fatalf("received %d events, want 2", len(announced))
			}
			// The message's tail is not a membership change: the next
			// batch brings nothing again.
			consume(t, f.svc, msg(r.ID, "alice", "m2", "second"))
			if bs = batches(t, f.pub); len(bs) != 3 || len(bs[2].Events) != 1 || bs[2].Events[0].Seq != 3 {
				t.Fatalf("announced %+v after a message, want the next message alone", bs[2:])
			}
		})
	}
}

func TestOpenDMLogsBothJoinsAndAnnouncesThemOnce(t *testing.T) {
	f := newFixture(t)
	// bob opens it; the log holds the sorted pair's joins, both sent by him.
	r, err := f.svc.OpenDM(ctx, "bob", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if r.LastSeq != 2 || r.CreatedBy != "bob" || fmt.Sprint(r.Members) != "[alice bob]" {
		t.Fatalf("opened %+v, want last_seq 2, created by bob, members [alice bob]", r)
	}
	for _, u := range []string{"alice", "bob"} {
		got := history(t, f.svc, u, r.ID, room.Page{})
		if len(got.Events) != 2 || got.LastSeq != 2 {
			t.Fatalf("%s reads %+v, want the two founding events", u, got)
		}
		checkJoin(t, got.Events[0], r.ID, 1, "alice", "bob")
		checkJoin(t, got.Events[1], r.ID, 2, "bob", "bob")
	}
	bs := batches(t, f.pub)
	if len(bs) != 1 || bs[0].RoomID != r.ID || len(bs[0].Events) != 2 {
		t.Fatalf("announced %+v, want one batch with both members' member_joined", bs)
	}
	checkJoin(t, bs[0].Events[0], r.ID, 1, "alice", "bob")
	checkJoin(t, bs[0].Events[1], r.ID, 2, "bob", "bob")

	// Opening it again, from either side, appends and announces nothing.
	for _, pair := range [][2]string{{"alice", "bob"}, {"bob", "alice"}} {
		again, err := f.svc.OpenDM(ctx, pair[0], pair[1])
		if err != nil || again.ID != r.ID || again.LastSeq != 2 || again.CreatedBy != "bob" {
			t.Fatalf("%s opening the dm again = %+v, %v", pair[0], again, err)
		}
	}
	if n := len(batches(t, f.pub)); n != 1 {
		t.Fatalf("%d batches announced after opening the dm again, want still 1", n)
	}
	if got := history(t, f.svc, "alice", r.ID, room.Page{}); got.LastSeq != 2 {
		t.Fatalf("last_seq after opening again = %d, want 2", got.LastSeq)
	}
}

// TestConcurrentDMOpensAnnounceOnce has both users open their DM at once,
// many times, through two replicas over one store: one room, one founding
// batch between all of them.
func TestConcurrentDMOpensAnnounceOnce(t *testing.T) {
	for name, store := range map[string]statestore.Store{"atomic": memstore.New(), "non-atomic": nonAtomic{memstore.New()}} {
		t.Run(name, func(t *testing.T) { concurrentDMOpens(t, store) })
	}
}

func concurrentDMOpens(t *testing.T, store statestore.Store) {
	// Fresh users: a DM's id is fixed by its pair, and a real store keeps
	// the rooms of earlier runs.
	run := rand.Text()
	alice, bob := "alice-"+run, "bob-"+run
	pubA, pubB := &publish.Memory{}, &publish.Memory{}
	replicas := []*room.Service{room.New(store, pubA, quiet()), room.New(store, pubB, quiet())}
	start := make(chan struct{})
	var wg sync.WaitGroup
	opened := make([]api.Room, 16)
	for i := range opened {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := alice, bob
			if i%2 == 1 {
				a, b = b, a
			}
			<-start
			r, err := replicas[(i/2)%2].OpenDM(ctx, a, b)
			if err != nil {
				t.Error(err)
			}
			opened[i] = r
		}()
	}
	close(start)
	wg.Wait()
	id := opened[0].ID
	for _, r := range opened {
		if r.ID != id || r.LastSeq != 2 {
			t.Fatalf("opens returned %+v, want one room at last_seq 2", opened)
		}
	}
	bs := roomBatches(t, id, pubA, pubB)
	if len(bs) != 1 || len(bs[0].Events) != 2 {
		t.Fatalf("announced %+v, want one batch of two events", bs)
	}
	creator := bs[0].Events[0].SenderID
	if creator != alice && creator != bob {
		t.Fatalf("founding events sent by %q", creator)
	}
	got := history(t, replicas[1], bob, id, room.Page{})
	if len(got.Events) != 2 || got.LastSeq != 2 {
		t.Fatalf("log = %+v, want the two founding events", got)
	}
	for i, u := range []string{alice, bob} {
		checkJoin(t, bs[0].Events[i], id, int64(i+1), u, creator)
		checkJoin(t, got.Events[i], id, int64(i+1), u, creator)
		if mine, err := replicas[i].Mine(ctx, u); err != nil || len(mine) != 1 || mine[0].ID != id {
			t.Fatalf("%s's rooms = %+v, %v; want the one dm", u, mine, err)
		}
	}
}

func TestFoundersReadMarkersStartAtTheirJoins(t *testing.T) {
	f := newFixture(t)
	r, err := f.svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if seq, n := markers(t, f.svc, "alice", r.ID); seq != 1 || n != 0 {
		t.Fatalf("creator: read_seq %d unread %d, want 1 (her join) and 0", seq, n)
	}

	dm, err := f.svc.OpenDM(ctx, "alice", "bob") // seq 1: alice joined, seq 2: bob
	if err != nil {
		t.Fatal(err)
	}
	check := func(user string, wantSeq, wantUnread int64) {
		t.Helper()
		if seq, n := markers(t, f.svc, user, dm.ID); seq != wantSeq || n != wantUnread {
			t.Fatalf("%s in the dm: read_seq %d unread %d, want %d and %d", user, seq, n, wantSeq, wantUnread)
		}
	}
	check("alice", 1, 0)
	check("bob", 2, 0)
	// A marker below one's own join does not move it back.
	if err := f.svc.MarkRead(ctx, "bob", dm.ID, 1); err != nil {
		t.Fatal(err)
	}
	check("bob", 2, 0)

	consume(t, f.svc, msg(dm.ID, "bob", "1", "hi"), msg(dm.ID, "bob", "2", "there")) // seqs 3-4
	check("alice", 1, 2)
	check("bob", 4, 0)
	// bob's join (seq 2) is no unread message: reading it leaves both.
	if err := f.svc.MarkRead(ctx, "alice", dm.ID, 2); err != nil {
		t.Fatal(err)
	}
	check("alice", 2, 2)
	if err := f.svc.MarkRead(ctx, "alice", dm.ID, 3); err != nil {
		t.Fatal(err)
	}
	check("alice", 3, 1)
	consume(t, f.svc, msg(dm.ID, "alice", "3", "hello")) // seq 5
	check("alice", 5, 0)
	check("bob", 4, 1)
}

// TestAFoundingTailIsServedAndMaterializedLater creates a room on a
// replica whose materialization fails right after the head is written:
// the head is the commit point, so the room exists, its founding event is
// announced and served from the head, and the next writer materializes it.
func TestAFoundingTailIsServedAndMaterializedLater(t *testing.T) {
	f := newFixture(t)
	crashy := room.New(failingTransact{f.store}, f.pub, quiet())
	if _, err := crashy.Create(ctx, "alice", "general", api.RoomPublic); err == nil {
		t.Fatal("create succeeded although its events could not be materialized")
	}
	bs := batches(t, f.pub)
	if len(bs) != 1 || len(bs[0].Events) != 1 {
		t.Fatalf("announced %+v, want the founding event once", bs)
	}
	id := bs[0].RoomID
	checkJoin(t, bs[0].Events[0], id, 1, "alice", "alice")
	got := history(t, f.svc, "alice", id, room.Page{})
	if len(got.Events) != 1 || got.LastSeq != 1 {
		t.Fatalf("history of an unmaterialized founding tail = %+v", got)
	}
	checkJoin(t, got.Events[0], id, 1, "alice", "alice")

	consume(t, f.svc, msg(id, "alice", "m", "first")) // materializes the founding tail, then appends seq 2
	got = history(t, f.svc, "alice", id, room.Page{HasAfter: true, Limit: 10})
	checkGapFree(t, got.Events, 1)
	if len(got.Events) != 2 || got.Events[1].Text != "first" {
		t.Fatalf("log = %+v, want the founding event and the message", got.Events)
	}
	if seq, n := markers(t, f.svc, "alice", id); seq != 2 || n != 0 {
		t.Fatalf("alice: read_seq %d unread %d, want 2 and 0", seq, n)
	}
	if public, err := f.svc.Public(ctx, "", room.DefaultPublicLimit); err != nil || len(public.Rooms) != 1 || public.Rooms[0].ID != id {
		t.Fatalf("public rooms = %+v, %v; want the room", public, err)
	}
}

// listingPub records, at each announcement on room.events, whether each
// user's room list already holds the announced room.
type listingPub struct {
	publish.Memory
	svc   *room.Service
	users []string

	mu     sync.Mutex
	listed map[string]bool // user -> the room was listed at its announcement
}

func (p *listingPub) Publish(ctx context.Context, topic string, payload any) error {
	if b, ok := payload.(events.RoomEventBatch); ok && topic == events.TopicRoomEvents {
		for _, u := range p.users {
			mine, err := p.svc.Mine(ctx, u)
			if err != nil {
				return err
			}
			p.mu.Lock()
			p.listed[u+" "+b.RoomID] = slices.ContainsFunc(mine, func(r api.Room) bool { return r.ID == b.RoomID })
			p.mu.Unlock()
		}
	}
	return p.Memory.Publish(ctx, topic, payload)
}

// TestANewRoomIsListedBeforeItIsAnnounced: a client that hears of a new
// room (its founding member_joined) and lists its rooms finds it.
func TestANewRoomIsListedBeforeItIsAnnounced(t *testing.T) {
	pub := &listingPub{users: []string{"alice", "bob"}, listed: map[string]bool{}}
	svc := room.New(memstore.New(), pub, quiet())
	pub.svc = svc
	r, err := svc.Create(ctx, "alice", "general", api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := svc.OpenDM(ctx, "bob", "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"alice " + r.ID: true, "bob " + r.ID: false, "alice " + dm.ID: true, "bob " + dm.ID: true}
	if fmt.Sprint(pub.listed) != fmt.Sprint(want) {
		t.Fatalf("listed at announcement: %v, want %v", pub.listed, want)
	}
}

// TestALostMembershipAnnouncementGoesWithTheNextChange: a join whose
// announcement failed is announced with the room's next change, whether
// that is a message or another membership change, so a ws replica that
// follows none of the room's members still learns that the joiner's
// sockets should follow the room.
func TestALostMembershipAnnouncementGoesWithTheNextChange(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	f.pub.SetFailure(errors.New("broker down"))
	if _, err := f.svc.Join(ctx, "bob", r.ID); err != nil {
		t.Fatal(err) // durable: the failed announcement is logged
	}
	f.pub.SetFailure(nil)
	consume(t, f.svc, msg(r.ID, "alice", "m", "welcome"))
	bs := batches(t, f.pub)
	last := bs[len(bs)-1]
	if len(last.Events) != 2 || last.Events[1].Text != "welcome" {
		t.Fatalf("the message's batch = %+v, want bob's join, then the message", last)
	}
	checkJoin(t, last.Events[0], r.ID, 2, "bob", "bob")

	f.pub.SetFailure(errors.New("broker down"))
	if _, err := f.svc.Join(ctx, "carol", r.ID); err != nil {
		t.Fatal(err)
	}
	f.pub.SetFailure(nil)
	if _, err := f.svc.Join(ctx, "dave", r.ID); err != nil {
		t.Fatal(err)
	}
	bs = batches(t, f.pub)
	last = bs[len(bs)-1]
	if len(last.Events) != 2 {
		t.Fatalf("dave's join batch = %+v, want carol's join again, then dave's", last)
	}
	checkJoin(t, last.Events[0], r.ID, 4, "carol", "carol")
	checkJoin(t, last.Events[1], r.ID, 5, "dave", "dave")
	checkGapFree(t, received(bs), 1)
}

// TestARetriedCreationFinishesTheSameRoom: a creation with a client_id
// whose materialization failed (the client got an error) is retried; the
// retry answers the room the first attempt made, finishes it, and
// announces its founding event again. Without a client_id every creation
// is a new room.
func TestARetriedCreationFinishesTheSameRoom(t *testing.T) {
	f := newFixture(t)
	crashy := room.New(failingTransact{f.store}, f.pub, quiet())
	if _, err := crashy.CreateOnce(ctx, "alice", "general", api.RoomPublic, "c1"); err == nil {
		t.Fatal("create succeeded although its events could not be materialized")
	}
	bs := batches(t, f.pub)
	if len(bs) != 1 {
		t.Fatalf("announced %+v, want the founding event", bs)
	}
	id := bs[0].RoomID

	r, err := f.svc.CreateOnce(ctx, "alice", "general", api.RoomPublic, "c1")
	if err != nil || r.ID != id || r.LastSeq != 1 {
		t.Fatalf("retry = %+v, %v; want room %s at last_seq 1", r, err, id)
	}
	if bs = batches(t, f.pub); len(bs) != 2 || bs[1].RoomID != id || len(bs[1].Events) != 1 {
		t.Fatalf("announced %+v, want the founding event again", bs)
	}
	checkJoin(t, bs[1].Events[0], id, 1, "alice", "alice")
	mine, err := f.svc.Mine(ctx, "alice")
	if err != nil || len(mine) != 1 || mine[0].ID != id {
		t.Fatalf("alice's rooms = %+v, %v; want the one room, materialized", mine, err)
	}
	if public, err := f.svc.Public(ctx, "", room.DefaultPublicLimit); err != nil || len(public.Rooms) != 1 || public.Rooms[0].ID != id {
		t.Fatalf("public rooms = %+v, %v; want the room", public, err)
	}

	// Once the room has moved on, a late retry answers it without
	// announcing anything again.
	consume(t, f.svc, msg(id, "alice", "m", "first"))
	before := len(batches(t, f.pub))
	if r, err := f.svc.CreateOnce(ctx, "alice", "general", api.RoomPublic, "c1"); err != nil || r.ID != id || r.LastSeq != 2 {
		t.Fatalf("late retry = %+v, %v", r, err)
	}
	if n := len(batches(t, f.pub)); n != before {
		t.Fatalf("a late retry announced %d batches", n-before)
	}
	if a, _ := f.svc.Create(ctx, "alice", "general", api.RoomPublic); a.ID == id {
		t.Fatal("a creation without client_id reused the room")
	}
}
