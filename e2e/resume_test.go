package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// TestResumeAfterMissingTwentyMessages: bob goes offline, alice sends 20
// messages, bob reconnects (to the other replica, through the gateway) and
// resumes from the last seq he saw: he gets exactly those 20, in order,
// then live ones, with no duplicate.
func TestResumeAfterMissingTwentyMessages(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "resume "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	a := newCollector(dialReplica(t, s, "ws-1", alice))
	b := newCollector(dialReplica(t, s, "ws-2", bob))

	send := func(id string) {
		t.Helper()
		if err := a.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: id, Text: "text of " + id}); err != nil {
			t.Fatal(err)
		}
	}
	send("before")
	b.until(t, 20*time.Second, "the first message", func() bool { return len(b.messages(room.ID)) == 1 })
	lastSeen := b.messages(room.ID)[0].Seq
	b.ws.Close()

	for i := range 20 {
		send(fmt.Sprintf("missed-%d", i))
	}
	a.until(t, 30*time.Second, "acks of the 20", func() bool { return len(a.acks) == 21 })

	b2 := newCollector(dialGatewayWith(t, bob, &client.WSOptions{Resume: map[string]int64{room.ID: lastSeen}}))
	b2.until(t, 30*time.Second, "the 20 missed messages", func() bool { return len(b2.messages(room.ID)) >= 20 })
	for i := range 3 {
		send(fmt.Sprintf("live-%d", i))
	}
	b2.until(t, 30*time.Second, "the live messages", func() bool { return len(b2.messages(room.ID)) >= 23 })

	got := b2.messages(room.ID)
	if len(got) != 23 {
		t.Fatalf("after resume bob got %d messages, want exactly 23", len(got))
	}
	for i, e := range got {
		want := fmt.Sprintf("missed-%d", i)
		if i >= 20 {
			want = fmt.Sprintf("live-%d", i-20)
		}
		if e.ClientID != want {
			t.Fatalf("message %d is %q, want %q", i, e.ClientID, want)
		}
	}
	if got[0].Seq != lastSeen+1 {
		t.Fatalf("resume started at seq %d, want %d", got[0].Seq, lastSeen+1)
	}
	checkOrdered(t, "bob after resume", b2.events[room.ID])
}

// TestRetriedClientIDGetsTheSameSeqAndCreatesNothing: a send retried with
// the same client_id is acked with the original seq and no event reaches
// anyone; the next new message takes the very next seq.
func TestRetriedClientIDGetsTheSameSeqAndCreatesNothing(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "retry "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	a := newCollector(dialReplica(t, s, "ws-1", alice))
	b := newCollector(dialReplica(t, s, "ws-2", bob))

	first := api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: "once", Text: "only once"}
	if err := a.ws.Send(first); err != nil {
		t.Fatal(err)
	}
	a.until(t, 20*time.Second, "the first ack", func() bool { return len(a.acks) == 1 })
	seq := a.acks["once"].Seq
	delete(a.acks, "once")

	// The retry, from a new connection on the other replica.
	a2 := newCollector(dialGateway(t, alice))
	if err := a2.ws.Send(first); err != nil {
		t.Fatal(err)
	}
	a2.until(t, 20*time.Second, "the retry's ack", func() bool { return len(a2.acks) == 1 })
	if got := a2.acks["once"].Seq; got != seq {
		t.Fatalf("retry acked with seq %d, want the original %d", got, seq)
	}
	next := api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: "next", Text: "next"}
	if err := a.ws.Send(next); err != nil {
		t.Fatal(err)
	}
	b.until(t, 20*time.Second, "the next message", func() bool { return len(b.messages(room.ID)) == 2 })
	msgs := b.messages(room.ID)
	if msgs[0].ClientID != "once" || msgs[1].ClientID != "next" || msgs[1].Seq != seq+1 {
		t.Fatalf("bob saw %+v; want once (seq %d) then next (seq %d), nothing in between", msgs, seq, seq+1)
	}
	hist, err := bob.EventsAfter(ctx, room.ID, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range hist.Events {
		if e.ClientID == "once" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("history holds %d events with client_id once, want 1", n)
	}
}
