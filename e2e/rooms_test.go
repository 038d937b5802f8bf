package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// apiStatus returns the status and code of an API error (0 and "" for nil).
func apiStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return 0, ""
	}
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("not an API error: %v", err)
	}
	return e.Status, e.Code
}

// roomOf returns u's entry for roomID in its room list.
func roomOf(t *testing.T, u *user, roomID string) api.Room {
	t.Helper()
	rooms, err := u.Rooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if r.ID == roomID {
			return r
		}
	}
	t.Fatalf("%s's rooms do not list %s", u.Username, roomID)
	return api.Room{}
}

// TestRoomsHistoryAndMarkersThroughTheStack is what a client following the
// API sees through the gateway, Dapr, the message service and its store:
// 130 messages page back with before/limit and forward with after/limit,
// ascending, gap-free, each page the right slice; the room list's last_seq
// matches; a DM is one room from both sides and closed to a third user;
// unread counts follow sends and the read marker, which never moves back;
// a non-member can neither read nor write a private room, over REST or
// the WebSocket, and nothing of theirs is stored; a member's add to a
// private room is an invitation the invitee lists and accepts by joining
// (or declines); the public list is paged.
func TestRoomsHistoryAndMarkersThroughTheStack(t *testing.T) {
	s := stack(t, "local")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob, carol := newUser(t, s, "ali"), newUser(t, s, "bob"), newUser(t, s, "car")

	room, err := alice.CreateRoom(ctx, randomName("history "), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil { // seq 2
		t.Fatal(err)
	}
	const n = 130
	for i := range n { // seqs 3 … 132
		if err := alice.Send(ctx, room.ID, fmt.Sprint("m", i), fmt.Sprint("message ", i)); err != nil {
			t.Fatal(err)
		}
	}
	const last = 2 + n
	within(t, 30*time.Second, "the 130 messages stored", func() bool { return roomOf(t, alice, room.ID).LastSeq == last })

	// Back with before/limit, from the end.
	check := func(page api.EventsResponse, from, to int64) {
		t.Helper()
		if page.LastSeq != last || int64(len(page.Events)) != to-from+1 {
			t.Fatalf("page [%d, %d]: %d events, last_seq %d", from, to, len(page.Events), page.LastSeq)
		}
		for i, e := range page.Events {
			seq := from + int64(i)
			if e.Seq != seq || e.RoomID != room.ID {
				t.Fatalf("page [%d, %d]: event %d is seq %d", from, to, i, e.Seq)
			}
			if seq > 2 && (e.Type != api.EventMessage || e.Text != fmt.Sprint("message ", seq-3) || e.SenderID != alice.ID) {
				t.Fatalf("seq %d = %+v, want alice's message %d", seq, e, seq-3)
			}
		}
	}
	for before := int64(last + 1); before > 1; before -= 50 {
		page, err := alice.EventsBefore(ctx, room.ID, before, 50)
		if err != nil {
			t.Fatal(err)
		}
		check(page, max(1, before-50), before-1)
	}
	// Forward with after/limit, from the start.
	for after := int64(0); after < last; after += 50 {
		page, err := bob.EventsAfter(ctx, room.ID, after, 50)
		if err != nil {
			t.Fatal(err)
		}
		check(page, after+1, min(last, after+50))
	}
	if page, err := bob.EventsAfter(ctx, room.ID, last, 50); err != nil || len(page.Events) != 0 {
		t.Fatalf("after the last seq: %+v, %v", page, err)
	}

	// Unread follows sends and the read marker, which never moves back.
	unread := func(u *user) (int64, int64) {
		r := roomOf(t, u, room.ID)
		return r.ReadSeq, r.Unread
	}
	if rs, un := unread(bob); rs != 2 || un != n {
		t.Fatalf("bob: read_seq %d unread %d, want 2 and %d", rs, un, n)
	}
	if rs, un := unread(alice); rs != last || un != 0 {
		t.Fatalf("alice (who sent them all): read_seq %d unread %d, want %d and 0", rs, un, last)
	}
	if err := bob.MarkRead(ctx, room.ID, 52); err != nil {
		t.Fatal(err)
	}
	if rs, un := unread(bob); rs != 52 || un != last-52 {
		t.Fatalf("bob after reading to 52: read_seq %d unread %d, want 52 and %d", rs, un, last-52)
	}
	if err := bob.MarkRead(ctx, room.ID, 10); err != nil {
		t.Fatal(err)
	}
	if rs, un := unread(bob); rs != 52 || un != last-52 {
		t.Fatalf("bob's marker moved back: read_seq %d unread %d", rs, un)
	}
	if st, code := apiStatus(t, bob.MarkRead(ctx, room.ID, -1)); st != 400 || code != "invalid_seq" {
		t.Fatalf("a negative read marker: %d %s, want 400 invalid_seq", st, code)
	}
	if err := bob.MarkRead(ctx, room.ID, last+100); err != nil {
		t.Fatal(err)
	}
	if rs, un := unread(bob); rs != last || un != 0 {
		t.Fatalf("bob after reading past the end: read_seq %d unread %d, want %d and 0", rs, un, last)
	}
	if err := bob.Send(ctx, room.ID, "b1", "caught up"); err != nil {
		t.Fatal(err)
	}
	within(t, 30*time.Second, "bob's message stored", func() bool { return roomOf(t, bob, room.ID).LastSeq == last+1 })
	if rs, un := unread(bob); rs != last+1 || un != 0 {
		t.Fatalf("bob after sending: read_seq %d unread %d, want %d and 0", rs, un, last+1)
	}
	if _, un := unread(alice); un != 1 {
		t.Fatalf("alice's unread after bob's message: %d, want 1", un)
	}

	// A DM is one room from both sides, and nobody else gets in.
	dm1, err := alice.OpenDM(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	dm2, err := bob.OpenDM(ctx, alice.ID)
	if err != nil || dm2.ID != dm1.ID || dm1.Kind != api.RoomDM {
		t.Fatalf("DM from both sides: %+v and %+v, %v", dm1, dm2, err)
	}
	if st, code := apiStatus(t, func() error { _, err := carol.JoinRoom(ctx, dm1.ID); return err }()); st != 403 || code != "dm_closed" {
		t.Fatalf("a third user joining a DM: %d %s, want 403 dm_closed", st, code)
	}
	if st, code := apiStatus(t, func() error { _, err := alice.OpenDM(ctx, "u_nobody"); return err }()); st != 404 || code != "user_not_found" {
		t.Fatalf("a DM with a user auth does not know: %d %s, want 404 user_not_found", st, code)
	}

	// A non-member can neither read nor write a private room.
	priv, err := alice.CreateRoom(ctx, randomName("private "), api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := apiStatus(t, func() error { _, err := carol.EventsAfter(ctx, priv.ID, 0, 50); return err }()); st != 403 {
		t.Fatalf("a non-member reading a private room: %d, want 403", st)
	}
	if st, _ := apiStatus(t, carol.Send(ctx, priv.ID, "c1", "let me in")); st != 403 {
		t.Fatalf("a non-member sending over REST: %d, want 403", st)
	}
	if st, code := apiStatus(t, func() error { _, err := carol.JoinRoom(ctx, priv.ID); return err }()); st != 403 || code != "not_invited" {
		t.Fatalf("a non-member joining a private room: %d %s, want 403 not_invited", st, code)
	}
	ws := dialGateway(t, carol)
	if err := ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: priv.ID, ClientID: "c2", Text: "let me in"}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == api.FrameError {
			if f.Code != "not_a_member" || f.Ref != "c2" {
				t.Fatalf("error frame %+v, want not_a_member for c2", f)
			}
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // a send that got through would be stored by now
	if page, err := alice.EventsAfter(ctx, priv.ID, 0, 50); err != nil || page.LastSeq != 1 || len(page.Events) != 1 {
		t.Fatalf("private room after carol's attempts: %+v, %v; want alice's join alone", page, err)
	}

	// Into a private room only by accepting: alice's add is an invitation
	// carol sees and accepts by joining; bob declines his.
	for _, u := range []*user{carol, bob} {
		if err := alice.AddMember(ctx, priv.ID, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := apiStatus(t, func() error { _, err := carol.EventsAfter(ctx, priv.ID, 0, 50); return err }()); st != 403 {
		t.Fatalf("an invitee reading before accepting: %d, want 403", st)
	}
	invs, err := carol.Invitations(ctx)
	if err != nil || len(invs) != 1 || invs[0].Room.ID != priv.ID || invs[0].InvitedBy != alice.ID {
		t.Fatalf("carol's invitations: %+v, %v; want alice's to the private room", invs, err)
	}
	if _, err := carol.JoinRoom(ctx, priv.ID); err != nil {
		t.Fatalf("carol accepting: %v", err)
	}
	if page, err := carol.EventsAfter(ctx, priv.ID, 0, 50); err != nil || page.LastSeq != 2 || page.Events[1].UserID != carol.ID {
		t.Fatalf("the private room after carol accepted: %+v, %v; want her member_joined at seq 2", page, err)
	}
	if err := bob.DeclineInvitation(ctx, priv.ID); err != nil {
		t.Fatal(err)
	}
	if st, code := apiStatus(t, func() error { _, err := bob.JoinRoom(ctx, priv.ID); return err }()); st != 403 || code != "not_invited" {
		t.Fatalf("bob joining after declining: %d %s, want 403 not_invited", st, code)
	}

	// The public list is paged through the gateway, newest first.
	newest, err := bob.CreateRoom(ctx, randomName("newest "), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	rooms, next, err := carol.PublicRoomsPage(ctx, "", 1)
	if err != nil || len(rooms) != 1 || rooms[0].ID != newest.ID || next == "" {
		t.Fatalf("first public page of 1: %+v %q %v; want the newest room and a cursor", rooms, next, err)
	}
	if rooms, _, err = carol.PublicRoomsPage(ctx, next, 1); err != nil || len(rooms) != 1 || rooms[0].ID != room.ID {
		t.Fatalf("second public page of 1: %+v %v; want the history room", rooms, err)
	}
}
