package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

// forEachBroker runs a test of the message path on the local profile
// (embedded NATS JetStream) and on kafka-postgres (the Kafka stand-in),
// whose partitions and consumer groups behave otherwise.
func forEachBroker(t *testing.T, test func(*testing.T, *launcher.Stack)) {
	for _, profile := range []string{"local", "kafka-postgres"} {
		t.Run(profile, func(t *testing.T) { test(t, stack(t, profile)) })
	}
}

// TestResumeAfterMissingTwentyMessages: bob goes offline, alice sends 20
// messages, bob reconnects (to the other replica, through the gateway) and
// resumes from the last seq he saw: he gets exactly those 20, in order,
// then live ones, with no duplicate.
func TestResumeAfterMissingTwentyMessages(t *testing.T) {
	forEachBroker(t, resumeAfterMissingTwentyMessages)
}

func resumeAfterMissingTwentyMessages(t *testing.T, s *launcher.Stack) {
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
	forEachBroker(t, retriedClientIDGetsTheSameSeqAndCreatesNothing)
}

func retriedClientIDGetsTheSameSeqAndCreatesNothing(t *testing.T, s *launcher.Stack) {
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

// TestKilledWSReplicaLosesNothing: on kafka-postgres, bob's replica
// (ws-2) dies by SIGKILL, app and sidecar, while alice keeps sending.
// Restarted, its sidecar joins Kafka as a new fan-out consumer group that
// starts at the newest offset, so nothing the broker held for the dead
// one reaches it; bob reconnects to it and resumes from the last seq he
// saw, and gets every message sent meanwhile exactly once and in order
// from the store, then live ones through the restarted replica.
func TestKilledWSReplicaLosesNothing(t *testing.T) {
	s := stack(t, "kafka-postgres")
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "kill "+randomName(""), api.RoomPublic)
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
	for i := range 5 {
		send(fmt.Sprintf("before-%d", i))
	}
	b.until(t, 30*time.Second, "the first five", func() bool { return len(b.messages(room.ID)) == 5 })
	lastSeen := b.messages(room.ID)[4].Seq

	ws2 := s.App("ws-2")
	ws2.Kill()
	restarted := false
	restart := func() {
		t.Helper()
		restarted = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		path, err := s.DaprdPath(ctx)
		if err == nil {
			err = ws2.Restart(ctx, path)
		}
		if err != nil {
			t.Fatalf("restart ws-2: %v", err)
		}
	}
	t.Cleanup(func() {
		if !restarted {
			restart()
			waitLive(t, s, "ws-2")
		}
	})
	for i := range 10 {
		send(fmt.Sprintf("during-%d", i))
	}
	a.until(t, 30*time.Second, "acks of all 15", func() bool { return len(a.acks) == 15 })
	started := time.Now()
	restart()
	t.Logf("ws-2 ready %s after its restart began", time.Since(started).Round(100*time.Millisecond))

	b2 := newCollector(dialReplica(t, s, "ws-2", bob))
	if err := b2.ws.Send(api.ClientFrame{Type: api.FrameResume, Rooms: map[string]int64{room.ID: lastSeen}}); err != nil {
		t.Fatal(err)
	}
	b2.until(t, 30*time.Second, "the ten sent while ws-2 was down", func() bool { return len(b2.messages(room.ID)) >= 10 })
	waitLive(t, s, "ws-2")
	t.Logf("ws-2 delivered live events %s after its restart began", time.Since(started).Round(100*time.Millisecond))
	for i := range 3 {
		send(fmt.Sprintf("live-%d", i))
	}
	b2.until(t, 30*time.Second, "the live messages through the restarted ws-2", func() bool { return len(b2.messages(room.ID)) >= 13 })

	got := b2.messages(room.ID)
	if len(got) != 13 {
		t.Fatalf("after resume bob got %d messages, want exactly 13", len(got))
	}
	for i, e := range got {
		want := fmt.Sprintf("during-%d", i)
		if i >= 10 {
			want = fmt.Sprintf("live-%d", i-10)
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

// waitLive waits until a ws replica that was just (re)started delivers
// live events. On Kafka its sidecar's consumer group joins the broker a
// moment after the replica reports ready, and starts at the newest
// offset: an event published before then reaches the replica's
// connections only with the room's next event (the gap fill) or a resume
// (docs/deploy.md). A user on the replica is sent messages in a room of
// their own until one arrives.
func waitLive(t *testing.T, s *launcher.Stack, replica string) {
	t.Helper()
	ctx := context.Background()
	sender, watcher := newUser(t, s, "live"), newUser(t, s, "live")
	room, err := sender.CreateRoom(ctx, "live "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	w := newCollector(dialReplica(t, s, replica, watcher))
	stop := make(chan struct{})
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		for i := 0; ; i++ {
			_ = sender.Send(ctx, room.ID, fmt.Sprintf("live-%d", i), "are you there")
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-sending }()
	w.until(t, 30*time.Second, "live delivery through "+replica, func() bool { return len(w.messages(room.ID)) > 0 })
}
