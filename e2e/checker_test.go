package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// TestTheCheckerFindsEveryViolation: the fault suite's checker is only
// worth its green if it turns red; each kind of violation, planted in a
// run that is otherwise clean, is reported.
func TestTheCheckerFindsEveryViolation(t *testing.T) {
	now := time.Now()
	msg := func(seq int64, sender, cid string) api.Event {
		return api.Event{RoomID: "r", Seq: seq, Type: api.EventMessage, SenderID: sender, ClientID: cid, Text: "t " + cid}
	}
	// A clean run: alice sent a1 and a2 (acked as 1 and 2), bob received
	// both in order.
	clean := func() (map[string][]api.Event, []*chatClient) {
		history := map[string][]api.Event{"r": {msg(1, "alice", "a1"), msg(2, "alice", "a2")}}
		alice := newChatClient("alice", &user{Client: &client.Client{}, User: api.User{ID: "alice"}}, "http://x", "r", 1, 1)
		bob := newChatClient("bob", &user{Client: &client.Client{}, User: api.User{ID: "bob"}}, "http://x", "r", 1, 1)
		for i, cid := range []string{"a1", "a2"} {
			alice.sent[cid] = &outgoing{room: "r", clientID: cid, text: "t " + cid, firstSent: now, attempts: 1, ackAt: now, seq: int64(i + 1)}
		}
		for _, c := range []*chatClient{alice, bob} {
			c.start["r"] = 0
			c.received["r"] = []delivery{{seq: 1, typ: api.EventMessage, clientID: "a1"}, {seq: 2, typ: api.EventMessage, clientID: "a2"}}
		}
		return history, []*chatClient{alice, bob}
	}
	if h, cs := clean(); len(check(h, cs)) != 0 {
		t.Fatalf("a clean run has violations: %v", check(h, cs))
	}
	cases := []struct {
		name  string
		plant func(h map[string][]api.Event, cs []*chatClient)
		want  string
	}{
		{"an acked message missing from history", func(h map[string][]api.Event, cs []*chatClient) {
			h["r"] = h["r"][:1]
		}, "not in history: lost"},
		{"a message stored twice", func(h map[string][]api.Event, cs []*chatClient) {
			h["r"] = append(h["r"], msg(3, "alice", "a2"))
			cs[1].received["r"] = append(cs[1].received["r"], delivery{seq: 3, typ: api.EventMessage, clientID: "a2"})
			cs[0].received["r"] = append(cs[0].received["r"], delivery{seq: 3, typ: api.EventMessage, clientID: "a2"})
		}, "in history 2 times"},
		{"a gap in history", func(h map[string][]api.Event, cs []*chatClient) {
			h["r"][1].Seq = 3
		}, "not gap-free"},
		{"a send never acked", func(h map[string][]api.Event, cs []*chatClient) {
			cs[0].sent["a2"].ackAt = time.Time{}
		}, "never acked"},
		{"an ack of the wrong seq", func(h map[string][]api.Event, cs []*chatClient) {
			cs[0].sent["a2"].seq = 7
		}, "acked as r/7"},
		{"a receiver that missed an event", func(h map[string][]api.Event, cs []*chatClient) {
			cs[1].received["r"] = cs[1].received["r"][1:]
		}, "received 1 events"},
		{"a receiver that got them out of order", func(h map[string][]api.Event, cs []*chatClient) {
			r := cs[1].received["r"]
			r[0], r[1] = r[1], r[0]
		}, "is seq 2, want 1"},
		{"a receiver that got another event at a seq", func(h map[string][]api.Event, cs []*chatClient) {
			cs[1].received["r"][1].clientID = "zz"
		}, "received as message/zz"},
		{"a message nobody sent", func(h map[string][]api.Event, cs []*chatClient) {
			h["r"] = append(h["r"], msg(3, "mallory", "m1"))
			for _, c := range cs {
				c.received["r"] = append(c.received["r"], delivery{seq: 3, typ: api.EventMessage, clientID: "m1"})
			}
		}, "never sent"},
		{"a duplicate a client saw on its socket", func(h map[string][]api.Event, cs []*chatClient) {
			cs[1].lastSeen["r"] = 2
			cs[1].take(api.ServerFrame{Type: api.FrameEvent, Event: &api.Event{RoomID: "r", Seq: 2, Type: api.EventMessage}})
		}, "a duplicate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, cs := clean()
			c.plant(h, cs)
			got := strings.Join(check(h, cs), "\n")
			if !strings.Contains(got, c.want) {
				t.Fatalf("violations %q lack %q", got, c.want)
			}
		})
	}
}
