package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

// TestEveryServiceIsHealthyAndReady checks /healthz and /readyz of every
// app of the stack, both ws replicas included.
func TestEveryServiceIsHealthyAndReady(t *testing.T) {
	s := stack(t, "local")
	apps := s.Apps("")
	if len(apps) != 7 {
		t.Fatalf("stack has %d apps, want 6 services with 2 ws replicas", len(apps))
	}
	// A test before may have restarted a service: the gateway's /readyz,
	// which counts every service, follows within its status interval.
	for _, a := range apps {
		for _, path := range []string{"/healthz", "/readyz"} {
			eventually(t, 10*time.Second, a.Name+" "+path+" 200", func() bool {
				resp, err := http.Get(a.URL() + path)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
		}
	}
}

// TestMessageCrossesReplicasBothWays puts two users on different ws
// replicas on purpose and proves messages cross in both directions,
// exactly once, in seq order, each sender acked with the seq the other
// receives.
func TestMessageCrossesReplicasBothWays(t *testing.T) {
	testCrossReplicas(t, stack(t, "local"))
}

// TestRedisProfileMessagePath runs the same proof on Redis Streams and
// Redis state.
func TestRedisProfileMessagePath(t *testing.T) {
	testCrossReplicas(t, stack(t, "redis"))
}

// TestRabbitMQPostgresProfileMessagePath: the same on RabbitMQ and
// PostgreSQL, swapped in by component files alone.
func TestRabbitMQPostgresProfileMessagePath(t *testing.T) {
	testCrossReplicas(t, stack(t, "rabbitmq-postgres"))
}

// TestNATSMySQLProfileMessagePath: the same on a NATS JetStream server and
// MariaDB.
func TestNATSMySQLProfileMessagePath(t *testing.T) {
	testCrossReplicas(t, stack(t, "nats-mysql"))
}

// TestKafkaPostgresProfileMessagePath: the same on Kafka (the launcher's
// kfake stand-in) and PostgreSQL.
func TestKafkaPostgresProfileMessagePath(t *testing.T) {
	testCrossReplicas(t, stack(t, "kafka-postgres"))
}

// TestKafkaKeepsARoomsOrderThroughTheBroker: sends through the REST API
// travel over messages.submitted, a topic of four partitions on Kafka.
// Keyed by their room, they land in one partition and are stored in the
// order they were sent; unkeyed, each would take a partition at random
// and the message service, reading the partitions side by side, would
// store them out of order.
func TestKafkaKeepsARoomsOrderThroughTheBroker(t *testing.T) {
	s := stack(t, "kafka-postgres")
	ctx := context.Background()
	alice := newUser(t, s, "alice")
	room, err := alice.CreateRoom(ctx, "order "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if err := alice.Send(ctx, room.ID, fmt.Sprintf("o-%02d", i), fmt.Sprintf("message %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []api.Event
	deadline := time.Now().Add(30 * time.Second)
	for len(msgs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages stored after 30s", len(msgs), n)
		}
		hist, err := alice.EventsAfter(ctx, room.ID, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		msgs = msgs[:0]
		for _, e := range hist.Events {
			if e.Type == api.EventMessage {
				msgs = append(msgs, e)
			}
		}
		time.Sleep(100 * time.Millisecond) // polling, bounded by the deadline
	}
	for i, e := range msgs {
		if want := fmt.Sprintf("o-%02d", i); e.ClientID != want {
			got := make([]string, len(msgs))
			for j, m := range msgs {
				got[j] = m.ClientID
			}
			t.Fatalf("message %d is %s, want %s: stored in the order %v", i, e.ClientID, want, got)
		}
	}
}

func testCrossReplicas(t *testing.T, s *launcher.Stack) {
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "cross "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	wsA := newCollector(dialReplica(t, s, "ws-1", alice))
	wsB := newCollector(dialReplica(t, s, "ws-2", bob))

	const each = 5
	for i := range each {
		for _, sender := range []struct {
			u  *user
			ws *collector
		}{{alice, wsA}, {bob, wsB}} {
			err := sender.ws.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID,
				ClientID: fmt.Sprintf("%s-%d", sender.u.Username, i), Text: fmt.Sprintf("hello %d from %s", i, sender.u.Username)})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []*collector{wsA, wsB} {
		c.until(t, 30*time.Second, "every message and ack", func() bool {
			return len(c.messages(room.ID)) >= 2*each && len(c.acks) >= each
		})
	}
	// Both connections see the same log: same seqs, same senders, in order.
	a, b := wsA.messages(room.ID), wsB.messages(room.ID)
	if len(a) != 2*each || len(b) != 2*each {
		t.Fatalf("alice saw %d messages, bob %d; want %d each (exactly once)", len(a), len(b), 2*each)
	}
	checkOrdered(t, "alice", wsA.events[room.ID])
	checkOrdered(t, "bob", wsB.events[room.ID])
	bySeq := map[int64]api.Event{}
	for i := range a {
		if a[i].Seq != b[i].Seq || a[i].ClientID != b[i].ClientID || a[i].Text != b[i].Text {
			t.Fatalf("event %d differs: alice %+v, bob %+v", i, a[i], b[i])
		}
		bySeq[a[i].Seq] = a[i]
	}
	// Each sender's acks name the seq the other side received.
	for _, c := range []struct {
		u   *user
		col *collector
	}{{alice, wsA}, {bob, wsB}} {
		for i := range each {
			id := fmt.Sprintf("%s-%d", c.u.Username, i)
			ack, ok := c.col.acks[id]
			if !ok {
				t.Fatalf("%s got no ack for %s", c.u.Username, id)
			}
			ev := bySeq[ack.Seq]
			if ev.ClientID != id || ev.SenderID != c.u.ID || ack.RoomID != room.ID {
				t.Fatalf("ack %+v names seq %d, which holds %+v", ack, ack.Seq, ev)
			}
		}
	}

	// History returns the same log.
	hist, err := bob.EventsAfter(ctx, room.ID, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	var histMsgs []api.Event
	for _, e := range hist.Events {
		if e.Type == api.EventMessage {
			histMsgs = append(histMsgs, e)
		}
	}
	if len(histMsgs) != 2*each {
		t.Fatalf("history has %d messages, want %d", len(histMsgs), 2*each)
	}
	for i := range histMsgs {
		if histMsgs[i].Seq != a[i].Seq || histMsgs[i].Text != a[i].Text {
			t.Fatalf("history %d = %+v, live %+v", i, histMsgs[i], a[i])
		}
	}
	checkOrdered(t, "history", hist.Events)
	if hist.Events[0].Seq != 1 || hist.LastSeq != hist.Events[len(hist.Events)-1].Seq {
		t.Fatalf("history starts at %d, last_seq %d, last event %d", hist.Events[0].Seq, hist.LastSeq, hist.Events[len(hist.Events)-1].Seq)
	}
}

// TestTwelveUsersAcrossReplicas: 12 members of one room, spread over both
// replicas (half directly, half through the gateway), each sees every
// message exactly once.
func TestTwelveUsersAcrossReplicas(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	users := make([]*user, 12)
	for i := range users {
		users[i] = newUser(t, s, fmt.Sprintf("u%d", i))
	}
	room, err := users[0].CreateRoom(ctx, "twelve "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	cols := make([]*collector, len(users))
	for i, u := range users {
		if i > 0 {
			if _, err := u.JoinRoom(ctx, room.ID); err != nil {
				t.Fatal(err)
			}
		}
		var ws *client.WS
		switch i % 3 {
		case 0:
			ws = dialReplica(t, s, "ws-1", u)
		case 1:
			ws = dialReplica(t, s, "ws-2", u)
		default:
			ws = dialGateway(t, u)
		}
		cols[i] = newCollector(ws)
	}
	const perUser = 2
	for round := range perUser {
		for i, u := range users {
			if err := cols[i].ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID,
				ClientID: fmt.Sprintf("m%d-%d", i, round), Text: fmt.Sprintf("%s says %d", u.Username, round)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := len(users) * perUser
	for i, c := range cols {
		c.until(t, 45*time.Second, fmt.Sprintf("user %d's messages", i), func() bool {
			return len(c.messages(room.ID)) >= want && len(c.acks) >= perUser
		})
	}
	first := cols[0].messages(room.ID)
	for i, c := range cols {
		got := c.messages(room.ID)
		if len(got) != want {
			t.Fatalf("user %d saw %d messages, want %d exactly once", i, len(got), want)
		}
		seen := map[string]bool{}
		for j, e := range got {
			if seen[e.ClientID+e.SenderID] {
				t.Fatalf("user %d saw %s twice", i, e.ClientID)
			}
			seen[e.ClientID+e.SenderID] = true
			if e.Seq != first[j].Seq {
				t.Fatalf("user %d's message %d has seq %d, user 0's %d", i, j, e.Seq, first[j].Seq)
			}
		}
		checkOrdered(t, fmt.Sprintf("user %d", i), c.messages(room.ID))
	}
}
