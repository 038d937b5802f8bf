package hub_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/services/ws/internal/hub"
)

func TestHandshake(t *testing.T) {
	s := newStack(t, 1, hub.Config{AllowedOrigins: []string{"https://chat.example", "http://localhost:8080"}})
	s.world.room("r1", "alice")
	ctx := context.Background()

	t.Run("bearer subprotocol is answered with papo.v1 and hello lists the rooms", func(t *testing.T) {
		w := s.dial(0, "alice")
		if w.Subprotocol != api.Subprotocol {
			t.Fatalf("got subprotocol %q, want %q", w.Subprotocol, api.Subprotocol)
		}
		if w.Hello.UserID != "alice" || w.Hello.SessionID != "sess-alice" {
			t.Fatalf("got hello %+v", w.Hello)
		}
		if len(w.Hello.Rooms) != 1 || w.Hello.Rooms[0].RoomID != "r1" {
			t.Fatalf("got rooms %+v, want r1", w.Hello.Rooms)
		}
	})
	t.Run("authorization header is accepted", func(t *testing.T) {
		w, err := client.DialWS(ctx, s.urls[0], s.token("alice"), &client.WSOptions{AuthorizationHeader: true})
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	})
	refused := []struct {
		name   string
		header http.Header
		url    string
		status int
		code   string
	}{
		{"no token", nil, s.urls[0], 401, "missing_token"},
		{"token in the query string is ignored", nil, s.urls[0] + "?access_token=" + s.token("alice"), 401, "missing_token"},
		{"bad token", http.Header{"Authorization": {"Bearer nope"}}, s.urls[0], 401, "invalid_token"},
		{"expired token", http.Header{"Authorization": {"Bearer " + s.iss.Token("alice", "s", -time.Minute)}}, s.urls[0], 401, "invalid_token"},
		{"origin outside the allow-list", http.Header{"Authorization": {"Bearer " + s.token("alice")}, "Origin": {"https://evil.example"}}, s.urls[0], 403, "origin_not_allowed"},
		{"bearer subprotocol without papo.v1", http.Header{"Sec-Websocket-Protocol": {"bearer." + s.token("alice")}}, s.urls[0], 400, "subprotocol_required"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := websocket.DefaultDialer.DialContext(ctx, tc.url, tc.header)
			if err == nil || resp == nil {
				t.Fatalf("handshake accepted (err %v)", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tc.status)
			}
			var body api.ErrorResponse
			if err := jsonDecode(resp, &body); err != nil || body.Error.Code != tc.code {
				t.Fatalf("got body %+v (%v), want code %s", body, err, tc.code)
			}
		})
	}
	t.Run("allowed origin, any case", func(t *testing.T) {
		w, err := client.DialWS(ctx, s.urls[0], s.token("alice"), &client.WSOptions{Origin: "HTTP://LOCALHOST:8080"})
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	})
	t.Run("revoked session", func(t *testing.T) {
		s.world.mu.Lock()
		s.world.revoked["sess-bob"] = true
		s.world.mu.Unlock()
		_, err := client.DialWS(ctx, s.urls[0], s.token("bob"), nil)
		var e *client.Error
		if !asError(err, &e) || e.Status != 401 || e.Code != "session_revoked" {
			t.Fatalf("got %v, want 401 session_revoked", err)
		}
	})
}

func TestPerUserConnectionCap(t *testing.T) {
	s := newStack(t, 1, hub.Config{MaxConnsPerUser: 2})
	s.dial(0, "alice")
	s.dial(0, "alice")
	w, _, err := websocket.DefaultDialer.Dial(s.urls[0], http.Header{"Authorization": {"Bearer " + s.token("alice")}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, _, err = w.ReadMessage()
	if got := client.CloseCode(err); got != api.CloseTooManyConns {
		t.Fatalf("got close %d (%v), want %d", got, err, api.CloseTooManyConns)
	}
	s.dial(0, "bob") // another user is not affected
}

func TestMessageCrossesReplicasWithAckAndIdempotentRetry(t *testing.T) {
	s := newStack(t, 2, hub.Config{})
	s.world.room("r1", "alice", "bob")
	a := s.live(0, "alice")
	b := s.live(1, "bob")

	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c1", Text: "hi bob"})
	ev := expectType(t, a, api.FrameEvent)
	ack := expectType(t, a, api.FrameAck)
	got := expectType(t, b, api.FrameEvent)
	if ack.Seq != 1 || ack.ClientID != "c1" || ack.RoomID != "r1" || ev.Event.Seq != 1 {
		t.Fatalf("got ack %+v event %+v, want seq 1", ack, ev.Event)
	}
	if got.Event.Seq != ack.Seq || got.Event.Text != "hi bob" || got.Event.SenderID != "alice" {
		t.Fatalf("bob got %+v, want alice's message with the acked seq", got.Event)
	}

	// A retry with the same client_id is acked with the same seq and
	// delivers nothing new.
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c1", Text: "hi bob"})
	ack2 := expectType(t, a, api.FrameAck)
	if ack2.Seq != 1 {
		t.Fatalf("retry acked with seq %d, want 1", ack2.Seq)
	}
	quiet(t, b, 200*time.Millisecond)

	// And back the other way.
	send(t, b, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c2", Text: "hi alice"})
	if f := expectType(t, a, api.FrameEvent); f.Event.Seq != 2 || f.Event.SenderID != "bob" {
		t.Fatalf("alice got %+v", f.Event)
	}
}

func TestTwelveUsersAcrossReplicasGetEveryMessageOnceInOrder(t *testing.T) {
	s := newStack(t, 2, hub.Config{})
	var users []string
	for i := range 12 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	s.world.room("big", users...)
	conns := make([]*client.WS, len(users))
	for i, u := range users {
		conns[i] = s.live(i%2, u)
	}
	const perUser = 5
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perUser {
				_ = c.Send(api.ClientFrame{Type: api.FrameSend, RoomID: "big", ClientID: fmt.Sprintf("%d-%d", i, k), Text: "x"})
			}
		}()
	}
	wg.Wait()
	total := len(users) * perUser
	for i, c := range conns {
		acks := 0
		for seq := int64(1); seq <= int64(total); {
			f := next(t, c)
			switch f.Type {
			case api.FrameAck:
				acks++
			case api.FrameEvent:
				if f.Event.Seq != seq {
					t.Fatalf("user %d got seq %d, want %d", i, f.Event.Seq, seq)
				}
				seq++
			default:
				t.Fatalf("user %d got %+v", i, f)
			}
		}
		for acks < perUser {
			expectType(t, c, api.FrameAck)
			acks++
		}
		quiet(t, c, 50*time.Millisecond)
	}
	// Submissions were batched: fewer pub/sub messages than sends.
	if got := s.world.submissions.Load(); got != int64(total) {
		t.Fatalf("got %d submissions, want %d", got, total)
	}
}

func TestGapIsFilledFromHistoryBeforeDelivering(t *testing.T) {
	s := newStack(t, 2, hub.Config{})
	s.world.room("r1", "alice", "bob")
	b := s.live(1, "bob")

	s.world.mu.Lock()
	s.world.dropFor[1] = 3 // replica 1 misses seqs 1..3
	s.world.mu.Unlock()
	for i := range 5 {
		s.world.post("r1", "alice", fmt.Sprint(i))
	}
	for seq := int64(1); seq <= 5; seq++ {
		if f := expectType(t, b, api.FrameEvent); f.Event.Seq != seq {
			t.Fatalf("got seq %d, want %d", f.Event.Seq, seq)
		}
	}
	if s.hubs[1].Stats().GapFills.Load() == 0 {
		t.Fatal("no gap fill recorded")
	}
	quiet(t, b, 100*time.Millisecond)
}

// TestASenderWhoseEventCameByAGapFillGetsItsAck: the replica missed the
// batch that carried the sender's event (and so its ack); the gap fill
// that brings the event brings the ack too, instead of the sender
// waiting for its retry.
func TestASenderWhoseEventCameByAGapFillGetsItsAck(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice", "bob")
	a := s.live(0, "alice")
	s.world.mu.Lock()
	s.world.dropFor[0] = 1 // the batch of alice's send
	s.world.mu.Unlock()
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c1", Text: "missed"})
	eventually(t, "the send stored", func() bool { return s.world.submissions.Load() == 1 })
	s.world.post("r1", "bob", "next") // seq 2: the jump starts the fill
	var ack api.ServerFrame
	var seqs []int64
	for len(seqs) < 2 || ack.Type == "" {
		switch f := next(t, a); f.Type {
		case api.FrameEvent:
			seqs = append(seqs, f.Event.Seq)
		case api.FrameAck:
			ack = f
		}
	}
	if !slices.Equal(seqs, []int64{1, 2}) || ack.ClientID != "c1" || ack.Seq != 1 {
		t.Fatalf("alice got seqs %v and ack %+v, want 1,2 and the ack of seq 1", seqs, ack)
	}
}

func TestDuplicateDeliveryIsDropped(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice", "bob")
	b := s.live(0, "bob")
	e := s.world.post("r1", "alice", "once")
	expectType(t, b, api.FrameEvent)
	s.hubs[0].RoomEvents(events.RoomEventBatch{RoomID: "r1", Events: []api.Event{e}})
	quiet(t, b, 150*time.Millisecond)
}

func TestSlowConsumerIsCutOffWhileTheRoomFlows(t *testing.T) {
	s := newStack(t, 1, hub.Config{QueueBytes: 64 << 10, WriteTimeout: 2 * time.Second})
	s.world.room("r1", "alice", "bob", "carol")
	fast := s.live(0, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The slow client reads nothing after hello: its reader stalls with a
	// one-frame buffer.
	slow, err := client.DialWS(ctx, s.urls[0], s.token("carol"), &client.WSOptions{Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	send(t, slow, api.ClientFrame{Type: api.FramePing})

	text := strings.Repeat("x", 4000)
	const n = 4000 // 16 MB: more than the socket buffers and the queue hold
	// The room flows at the pace of its fast reader.
	for seq := int64(1); seq <= n; seq++ {
		s.world.post("r1", "alice", text)
		f := nextSkipping(t, fast, api.FramePong)
		if f.Type != api.FrameEvent || f.Event.Seq != seq {
			t.Fatalf("fast client got %+v, want event %d", f.Type, seq)
		}
	}
	eventually(t, "slow client disconnected", func() bool { return s.hubs[0].UserConns("carol") == 0 })
	if s.hubs[0].Stats().SlowConsumers.Load() == 0 {
		t.Fatal("no slow consumer recorded")
	}
	if s.hubs[0].UserConns("bob") != 1 {
		t.Fatal("fast client was disconnected")
	}
}

func TestInputLimitsAnswerAndKeepTheConnection(t *testing.T) {
	// Rate and strikes raised: the table sends more frames than a burst.
	s := newStack(t, 1, hub.Config{MaxFrameBytes: 32 << 10, Rate: 1000, Burst: 1000, StrikeRate: 100, StrikeBurst: 1000})
	s.world.room("r1", "alice")
	w := s.live(0, "alice")

	cases := []struct {
		name  string
		frame string
		code  string
		ref   string
	}{
		{"oversize frame", `{"type":"send","room_id":"r1","client_id":"big","text":"` + strings.Repeat("y", 40<<10) + `"}`, "frame_too_large", ""},
		{"malformed json", `{"type":`, "invalid_json", ""},
		{"unknown type", `{"type":"dance","client_id":"u1"}`, "unknown_type", "u1"},
		{"missing type", `{"room_id":"r1"}`, "missing_field", ""},
		{"missing room", `{"type":"send","client_id":"m1","text":"a"}`, "missing_field", "m1"},
		{"missing client_id", `{"type":"send","room_id":"r1","text":"a"}`, "missing_field", ""},
		{"empty text", `{"type":"send","room_id":"r1","client_id":"e1","text":" "}`, "invalid_text", "e1"},
		{"text over 4000 characters", `{"type":"send","room_id":"r1","client_id":"l1","text":"` + strings.Repeat("é", 4001) + `"}`, "invalid_text", "l1"},
		{"client_id over 64", `{"type":"send","room_id":"r1","client_id":"` + strings.Repeat("c", 65) + `","text":"a"}`, "invalid_client_id", strings.Repeat("c", 64)},
		{"client_id over 64 characters", `{"type":"send","room_id":"r1","client_id":"` + strings.Repeat("é", 65) + `","text":"a"}`, "invalid_client_id", strings.Repeat("é", 64)},
		{"client_id with a control character", `{"type":"send","room_id":"r1","client_id":"c\u0007","text":"a"}`, "invalid_client_id", "c\a"},
		{"text with a control character", `{"type":"send","room_id":"r1","client_id":"k1","text":"a\u0000b"}`, "invalid_text", "k1"},
		{"not UTF-8", "{\"type\":\"send\",\"room_id\":\"r1\",\"client_id\":\"u8\",\"text\":\"a\xffb\"}", "invalid_text", ""},
		{"lone surrogate escape in text", `{"type":"send","room_id":"r1","client_id":"s1","text":"a\ud800b"}`, "invalid_text", ""},
		{"lone surrogate escape in client_id", `{"type":"send","room_id":"r1","client_id":"s\udc00","text":"a"}`, "invalid_client_id", ""},
		{"invalid UTF-8 in client_id", "{\"type\":\"send\",\"room_id\":\"r1\",\"client_id\":\"a\xffb\",\"text\":\"a\"}", "invalid_client_id", ""},
		{"bidi override in text", `{"type":"send","room_id":"r1","client_id":"b1","text":"abc\u202Edef"}`, "invalid_text", "b1"},
		{"unbalanced bidi isolate in text", `{"type":"send","room_id":"r1","client_id":"b2","text":"abc\u2067def"}`, "invalid_text", "b2"},
		{"only invisible characters", `{"type":"send","room_id":"r1","client_id":"b3","text":"\u200b\u2060"}`, "invalid_text", "b3"},
		{"zero-width space in client_id", `{"type":"send","room_id":"r1","client_id":"z\u200b1","text":"a"}`, "invalid_client_id", "z\u200b1"},
		{"not a member", `{"type":"send","room_id":"r2","client_id":"n1","text":"a"}`, "not_a_member", "n1"},
		{"edit without target", `{"type":"edit","room_id":"r1","client_id":"t1","text":"a"}`, "missing_field", "t1"},
		{"resume without rooms", `{"type":"resume"}`, "missing_field", ""},
		{"read without seq", `{"type":"read","room_id":"r1"}`, "missing_field", ""},
		{"read at a negative seq", `{"type":"read","room_id":"r1","seq":-3}`, "invalid_seq", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.WriteRaw([]byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			expectError(t, w, tc.code, tc.ref)
			// Still usable.
			send(t, w, api.ClientFrame{Type: api.FramePing})
			expectType(t, w, api.FramePong)
		})
	}
	t.Run("64 characters of client_id are accepted", func(t *testing.T) {
		send(t, w, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: strings.Repeat("é", 64), Text: "hi"})
		expectType(t, w, api.FrameEvent)
		expectType(t, w, api.FrameAck)
	})
	t.Run("emoji joined by ZWJ and a balanced isolate are accepted", func(t *testing.T) {
		text := "\U0001F468\u200D\U0001F469\u200D\U0001F467 \u2067\u05e9\u05dc\u05d5\u05dd\u2069"
		send(t, w, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "zwj", Text: text})
		if ev := expectType(t, w, api.FrameEvent); ev.Event.Text != text {
			t.Fatalf("got text %q, want %q", ev.Event.Text, text)
		}
		expectType(t, w, api.FrameAck)
	})
	t.Run("4000 characters are accepted", func(t *testing.T) {
		send(t, w, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "ok", Text: strings.Repeat("é", 4000)})
		expectType(t, w, api.FrameEvent)
		expectType(t, w, api.FrameAck)
	})
	t.Run("a frame over the hard limit closes with 1009", func(t *testing.T) {
		_ = w.WriteRaw([]byte(strings.Repeat(" ", 2<<20)))
		if got := closed(t, w); got != websocket.CloseMessageTooBig {
			t.Fatalf("got close %d, want 1009", got)
		}
	})
}

func TestRateLimitThenPolicyClose(t *testing.T) {
	s := newStack(t, 1, hub.Config{Rate: 1, Burst: 3, StrikeRate: 0.1, StrikeBurst: 5})
	w := s.live(0, "alice") // the resume after hello and the ping used two tokens
	for range 1 {
		send(t, w, api.ClientFrame{Type: api.FramePing})
		expectType(t, w, api.FramePong)
	}
	send(t, w, api.ClientFrame{Type: api.FrameSend, ClientID: "r1"})
	expectError(t, w, "rate_limited", "r1")
	// Sustained abuse: the strike budget runs out and the socket closes.
	for range 20 {
		if err := w.Send(api.ClientFrame{Type: api.FramePing}); err != nil {
			break
		}
	}
	if got := closed(t, w); got != api.ClosePolicy {
		t.Fatalf("got close %d, want %d", got, api.ClosePolicy)
	}
	if s.hubs[0].Stats().PolicyCloses.Load() != 1 {
		t.Fatal("policy close not counted")
	}
}

func TestResumeDeliversExactlyTheMissedEventsThenLive(t *testing.T) {
	s := newStack(t, 2, hub.Config{LiveHold: 5 * time.Second})
	s.world.room("r1", "alice", "bob")
	b := s.live(1, "bob")
	s.world.post("r1", "alice", "seen")
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != 1 {
		t.Fatalf("got %+v", f.Event)
	}
	b.Close()
	eventually(t, "bob gone", func() bool { return s.hubs[1].UserConns("bob") == 0 })
	for i := range 20 {
		s.world.post("r1", "alice", fmt.Sprint("missed ", i))
	}

	// Reconnect (to the other replica), and while resuming, live events
	// keep coming.
	b2 := s.dialWith(0, "bob", &client.WSOptions{NoResume: true})
	if b2.Hello.Rooms[0].LastSeq != 21 {
		t.Fatalf("hello says last_seq %d, want 21", b2.Hello.Rooms[0].LastSeq)
	}
	s.world.post("r1", "alice", "live 1")
	send(t, b2, api.ClientFrame{Type: api.FrameResume, Rooms: map[string]int64{"r1": 1}})
	s.world.post("r1", "alice", "live 2")
	for seq := int64(2); seq <= 23; seq++ {
		if f := expectType(t, b2, api.FrameEvent); f.Event.Seq != seq {
			t.Fatalf("got seq %d, want %d", f.Event.Seq, seq)
		}
	}
	quiet(t, b2, 150*time.Millisecond)
	s.world.post("r1", "alice", "live 3")
	if f := expectType(t, b2, api.FrameEvent); f.Event.Seq != 24 {
		t.Fatalf("got seq %d, want 24", f.Event.Seq)
	}
}

func TestLiveEventsWaitForTheHoldAfterHello(t *testing.T) {
	s := newStack(t, 1, hub.Config{LiveHold: 200 * time.Millisecond})
	s.world.room("r1", "alice", "bob")
	b := s.dialWith(0, "bob", &client.WSOptions{NoResume: true}) // sends nothing
	s.world.post("r1", "alice", "during the hold")
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != 1 {
		t.Fatalf("got %+v", f.Event)
	}
}

// TestSignalsAreNotHeldAfterHello: a presence or typing signal reaches a
// new socket at once, even one that sent nothing yet (whose room events
// still wait for its first frame): a peer who connects right after you is
// shown online.
func TestSignalsAreNotHeldAfterHello(t *testing.T) {
	s := newStack(t, 1, hub.Config{LiveHold: time.Minute})
	s.world.room("r1", "alice", "bob")
	b := s.dialWith(0, "bob", &client.WSOptions{NoResume: true}) // sends nothing
	// The hub routes bob's rooms just after his hello: signal until one
	// arrives.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.hubs[0].Signals(events.SignalBatch{Signals: []events.Signal{{
			Kind: events.SignalPresence, UserID: "alice", Status: api.Online, RoomIDs: []string{"r1"},
		}}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		f, err := b.Read(ctx)
		cancel()
		if err == nil {
			if f.Type != api.FramePresence || f.UserID != "alice" || f.Status != api.Online {
				t.Fatalf("got %+v, want alice online", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no presence frame while bob's room events are held")
		}
	}
	a := s.live(0, "alice")
	send(t, a, api.ClientFrame{Type: api.FrameTyping, RoomID: "r1"})
	if f := nextSkipping(t, b, api.FramePresence); f.Type != api.FrameTyping || f.UserID != "alice" {
		t.Fatalf("got %+v, want alice typing", f)
	}
	// Room events still wait for bob's first frame.
	s.world.post("r1", "alice", "held")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	for {
		f, err := b.Read(ctx)
		if err != nil {
			break // quiet
		}
		if f.Type != api.FramePresence {
			t.Fatalf("got %+v during the hold", f)
		}
	}
	send(t, b, api.ClientFrame{Type: api.FramePing})
	if f := nextSkipping(t, b, api.FramePong, api.FramePresence); f.Type != api.FrameEvent || f.Event.Text != "held" {
		t.Fatalf("got %+v, want the held event after bob's first frame", f)
	}
}

// TestAClientThatResumesNothingIsLiveAtOnce: the resume of nothing that
// clients send right after hello starts live events without the hold.
func TestAClientThatResumesNothingIsLiveAtOnce(t *testing.T) {
	s := newStack(t, 1, hub.Config{LiveHold: time.Minute})
	s.world.room("r1", "alice", "bob")
	b := s.dial(0, "bob") // resumes nothing
	s.world.post("r1", "alice", "at once")
	if f := expectType(t, b, api.FrameEvent); f.Event.Text != "at once" {
		t.Fatalf("got %+v", f.Event)
	}
}

func TestMembershipChangesUpdateRoutingLive(t *testing.T) {
	s := newStack(t, 2, hub.Config{})
	s.world.room("r1", "alice")
	b := s.live(1, "bob") // no rooms yet; replica 1 does not route r1
	s.world.post("r1", "alice", "before bob")
	joined := s.world.member("r1", "bob", true)
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != joined.Seq || f.Event.Type != api.EventMemberJoined {
		t.Fatalf("got %+v, want bob's member_joined", f.Event)
	}
	s.world.post("r1", "alice", "welcome")
	if f := expectType(t, b, api.FrameEvent); f.Event.Text != "welcome" {
		t.Fatalf("got %+v", f.Event)
	}
	// Bob can send now: membership comes from the table.
	send(t, b, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "b1", Text: "thanks"})
	expectType(t, b, api.FrameEvent)
	expectType(t, b, api.FrameAck)

	left := s.world.member("r1", "bob", false)
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != left.Seq || f.Event.Type != api.EventMemberLeft {
		t.Fatalf("got %+v, want bob's member_left", f.Event)
	}
	s.world.post("r1", "alice", "after bob")
	quiet(t, b, 150*time.Millisecond)
	send(t, b, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "b2", Text: "hello?"})
	expectError(t, b, "not_a_member", "b2")
}

// TestAJoinAnnouncedAgainRoutesTheRoom: a replica that missed a join in a
// room it does not follow learns it when the message service announces
// the join again with the room's next change, and the joiner's socket
// gets the join, then the event.
func TestAJoinAnnouncedAgainRoutesTheRoom(t *testing.T) {
	s := newStack(t, 2, hub.Config{})
	s.world.room("r1", "alice")
	b := s.live(1, "bob") // replica 1 follows no room of bob's yet
	s.world.mu.Lock()
	s.world.dropFor[1] = 1
	s.world.mu.Unlock()
	joined := s.world.member("r1", "bob", true) // lost on its way to replica 1
	quiet(t, b, 150*time.Millisecond)

	s.world.mu.Lock()
	welcome := s.world.appendLocked("r1", api.Event{Type: api.EventMessage, SenderID: "alice", Text: "welcome"})
	s.world.fanoutLocked(events.RoomEventBatch{RoomID: "r1", Events: []api.Event{joined, welcome}})
	s.world.mu.Unlock()
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != joined.Seq || f.Event.Type != api.EventMemberJoined {
		t.Fatalf("got %+v, want bob's member_joined", f.Event)
	}
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != welcome.Seq || f.Event.Text != "welcome" {
		t.Fatalf("got %+v, want the welcome", f.Event)
	}
	quiet(t, b, 150*time.Millisecond)
}

func TestTypingIsThrottledAndNotPersisted(t *testing.T) {
	s := newStack(t, 2, hub.Config{TypingEvery: time.Hour})
	s.world.room("r1", "alice", "bob")
	a := s.live(0, "alice")
	b := s.live(1, "bob")
	send(t, a, api.ClientFrame{Type: api.FrameTyping, RoomID: "r1"})
	send(t, a, api.ClientFrame{Type: api.FrameTyping, RoomID: "r1"})
	if f := expectType(t, b, api.FrameTyping); f.UserID != "alice" || f.RoomID != "r1" {
		t.Fatalf("got %+v", f)
	}
	quiet(t, b, 150*time.Millisecond)
	quiet(t, a, 10*time.Millisecond) // not echoed to the typer
	if got := s.world.count(events.TopicSignals); got != 1 {
		t.Fatalf("got %d signal publishes, want 1", got)
	}
	if got := s.world.count(events.TopicSubmitted); got != 0 {
		t.Fatalf("typing was submitted for persistence (%d)", got)
	}
}

func TestReadMarkerGoesToTheMessageService(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice")
	a := s.live(0, "alice")
	send(t, a, api.ClientFrame{Type: api.FrameRead, RoomID: "r1", Seq: 7})
	eventually(t, "read marker", func() bool {
		s.world.mu.Lock()
		defer s.world.mu.Unlock()
		return len(s.world.reads) == 1 && s.world.reads[0] == "r1/alice/7"
	})
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	ctx := context.Background()
	w, err := client.DialWS(ctx, s.urls[0], s.iss.Token("alice", "s1", 2*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A token of another session is refused; a refreshed one of the same
	// session extends the socket's life.
	send(t, w, api.ClientFrame{Type: api.FrameAuth, Token: s.iss.Token("alice", "s2", time.Hour)})
	expectError(t, w, "token_mismatch", "")
	send(t, w, api.ClientFrame{Type: api.FrameAuth, Token: s.iss.Token("alice", "s1", 4*time.Second)})
	start := time.Now()
	if got := closed(t, w); got != api.CloseTokenExpired {
		t.Fatalf("got close %d, want %d", got, api.CloseTokenExpired)
	}
	if time.Since(start) < 2500*time.Millisecond {
		t.Fatal("closed at the first token's expiry despite the refresh")
	}
}

func TestRevokedSessionIsClosed(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	a := s.dial(0, "alice")
	other := s.dial(0, "bob")
	s.hubs[0].SessionRevoked(events.SessionRevoked{SessionID: "sess-alice", UserID: "alice"})
	if got := closed(t, a); got != api.CloseSessionRevoked {
		t.Fatalf("got close %d, want %d", got, api.CloseSessionRevoked)
	}
	// Also by signal, without the user id.
	s.hubs[0].Signals(events.SignalBatch{Signals: []events.Signal{{Kind: events.SignalSessionRevoked, SessionID: "sess-bob"}}})
	if got := closed(t, other); got != api.CloseSessionRevoked {
		t.Fatalf("got close %d, want %d", got, api.CloseSessionRevoked)
	}
}

// TestSubmitFailureFallsBackToPublishThenAnswersTheSender: a message
// service that does not answer is tried a few times, then the batch is
// published to messages.submitted (acked from room.events as usual); only
// when that fails too is the sender told unavailable. A refusal answered
// by the message service reaches the sender as an error frame.
func TestSubmitFailureFallsBackToPublishThenAnswersTheSender(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice")
	a := s.live(0, "alice")
	s.world.failSubmit.Store(true)
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "p1", Text: "x"})
	if f := expectType(t, a, api.FrameEvent); f.Event.ClientID != "p1" {
		t.Fatalf("got %+v, want the event of p1", f)
	}
	if f := expectType(t, a, api.FrameAck); f.ClientID != "p1" || f.Seq != 1 {
		t.Fatalf("got %+v, want the ack of p1 at seq 1", f)
	}
	if got := s.world.count(events.TopicSubmitted); got != 1 {
		t.Fatalf("got %d publishes to %s, want the fallback's 1", got, events.TopicSubmitted)
	}
	s.world.failPublish.Store(true)
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "f1", Text: "x"})
	expectError(t, a, "unavailable", "f1")
	s.world.failPublish.Store(false)
	s.world.failSubmit.Store(false)
	// The message service refuses (alice was removed without an event).
	s.world.mu.Lock()
	s.world.rooms["r1"].members["alice"] = false
	s.world.mu.Unlock()
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "f2", Text: "x"})
	expectError(t, a, "not_a_member", "f2")
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	a := s.dial(0, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.hubs[0].Shutdown(ctx) }()
	if got := closed(t, a); got != websocket.CloseGoingAway {
		t.Fatalf("got close %d, want 1001", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, err := client.DialWS(context.Background(), s.urls[0], s.token("bob"), nil)
	var e *client.Error
	if !asError(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %v, want 503 after shutdown", err)
	}
}

func TestSubmissionsAreBatchedUnderLoad(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice")
	s.world.gate, s.world.entered = make(chan struct{}), make(chan struct{}, 10)
	a := s.live(0, "alice")
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "first", Text: "x"})
	<-s.world.entered // the first publish is in flight...
	for i := range 9 {
		send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: fmt.Sprint("more", i), Text: "x"})
	}
	eventually(t, "sends queued", func() bool { return s.hubs[0].Stats().Queued() == 9 })
	s.world.gate <- struct{}{}
	<-s.world.entered // ...and the nine that queued meanwhile go as one.
	s.world.gate <- struct{}{}
	for range 10 {
		nextSkipping(t, a, api.FrameAck)
	}
	if got, want := s.world.count("submit"), 2; got != want {
		t.Fatalf("got %d calls for 10 sends, want %d", got, want)
	}
	// The count moves after the call returns, which may be after the acks.
	eventually(t, "10 submissions handed over", func() bool { return s.hubs[0].Stats().Submitted.Load() == 10 })
}

// TestSubmissionsOfOtherRoomsDoNotWaitForABusyRoom: while a call for one
// room is in flight, another room's send goes out in a call of its own at
// once, but the busy room's next send waits for its first call (so a
// room's sends are stored in order).
func TestSubmissionsOfOtherRoomsDoNotWaitForABusyRoom(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice")
	s.world.room("r2", "alice")
	s.world.gate, s.world.entered = make(chan struct{}), make(chan struct{}, 10)
	a := s.live(0, "alice")
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "a", Text: "x"})
	<-s.world.entered // r1's call is in flight
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r2", ClientID: "b", Text: "x"})
	select {
	case <-s.world.entered: // r2's call too
	case <-time.After(5 * time.Second):
		t.Fatal("a send to another room waited for the busy room")
	}
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c", Text: "x"})
	select {
	case <-s.world.entered:
		t.Fatal("a second call for r1 while its first was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	s.world.gate <- struct{}{}
	s.world.gate <- struct{}{}
	<-s.world.entered // now r1's second send goes
	s.world.gate <- struct{}{}
	acks := map[string]int64{}
	for len(acks) < 3 {
		f := nextSkipping(t, a, api.FrameEvent)
		if f.Type != api.FrameAck {
			t.Fatalf("got %+v, want acks", f)
		}
		acks[f.ClientID] = f.Seq
	}
	if acks["a"] != 1 || acks["c"] != 2 || acks["b"] != 1 {
		t.Fatalf("got acks %v, want a and c at seqs 1 and 2 of r1, b at 1 of r2", acks)
	}
}

func TestPresenceReachesUsersSharingARoomOnce(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice", "bob")
	s.world.room("r2", "alice", "bob")
	s.world.room("r3", "carol")
	b := s.live(0, "bob")
	c := s.live(0, "carol")
	s.hubs[0].Signals(events.SignalBatch{Signals: []events.Signal{{
		Kind: events.SignalPresence, UserID: "alice", Status: api.Online, RoomIDs: []string{"r1", "r2"},
	}}})
	if f := expectType(t, b, api.FramePresence); f.UserID != "alice" || f.Status != api.Online {
		t.Fatalf("got %+v", f)
	}
	quiet(t, b, 100*time.Millisecond) // once, though two rooms are shared
	quiet(t, c, 10*time.Millisecond)  // carol shares no room with alice
}

// TestAFrameOverTheHardLimitAlwaysClosesWith1009: behind a proxy (here
// net/http/httputil's, as a relay or load balancer would be), a client
// that sends a frame over the hard limit must read the 1009 close every
// time. A replica that closed its socket with the rest of the frame
// unread would send a TCP reset, and the proxy would drop the close frame
// it had not forwarded yet (3 to 7 in 30 here before the replica lingered).
func TestAFrameOverTheHardLimitAlwaysClosesWith1009(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice")
	target, _ := url.Parse("http" + strings.TrimSuffix(strings.TrimPrefix(s.urls[0], "ws"), "/ws"))
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(proxy.Close)
	via := "ws" + strings.TrimPrefix(proxy.URL, "http") + "/ws"
	codes := map[int]int{}
	for _, size := range []int{1<<20 + 1, 2 << 20, 4 << 20} {
		for range 10 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			w, err := client.DialWS(ctx, via, s.token("alice"), nil)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			_ = w.WriteRaw([]byte(strings.Repeat(" ", size)))
			codes[closed(t, w)]++
			w.Close()
		}
	}
	if codes[websocket.CloseMessageTooBig] != 30 {
		t.Fatalf("got close codes %v (0: a reset), want 1009 each time", codes)
	}
}

func TestResumeRefusesSeqsTheRoomHasNotReachedAndKeepsTheRoomLive(t *testing.T) {
	cases := []struct {
		name string
		seq  int64
	}{
		{"a seq past the room's head", 4611686018427387904},
		{"the head plus one", 4},
		{"a negative seq", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, 1, hub.Config{LiveHold: 5 * time.Second})
			s.world.room("r1", "alice", "bob")
			for i := range 3 {
				s.world.post("r1", "alice", fmt.Sprint("before ", i))
			}
			b := s.dialWith(0, "bob", &client.WSOptions{NoResume: true}) // the resume below is its first frame
			send(t, b, api.ClientFrame{Type: api.FrameResume, Rooms: map[string]int64{"r1": tc.seq}})
			f := expectType(t, b, api.FrameError)
			if f.Code != "invalid_seq" || !slices.Equal(f.RoomIDs, []string{"r1"}) {
				t.Fatalf("got %+v, want invalid_seq for r1", f)
			}
			// The room goes on from hello's last_seq: no replay from 1, and
			// the next message arrives (a cursor past the head would mute
			// the room on this socket).
			quiet(t, b, 100*time.Millisecond)
			s.world.post("r1", "alice", "after")
			if f := expectType(t, b, api.FrameEvent); f.Event.Seq != 4 {
				t.Fatalf("got seq %d, want 4", f.Event.Seq)
			}
		})
	}
}

func TestResumeAtTheTrueHeadIsAcceptedWhenThisReplicaLagsBehindIt(t *testing.T) {
	s := newStack(t, 1, hub.Config{LiveHold: 5 * time.Second})
	s.world.room("r1", "alice", "bob")
	b := s.dialWith(0, "bob", &client.WSOptions{NoResume: true}) // the resume below is its first frame
	// The replica misses seq 1 for now (in flight to it); bob saw it
	// through another replica.
	s.world.mu.Lock()
	s.world.dropFor[0] = 1
	s.world.mu.Unlock()
	s.world.post("r1", "alice", "seen elsewhere")
	send(t, b, api.ClientFrame{Type: api.FrameResume, Rooms: map[string]int64{"r1": 1}})
	s.world.post("r1", "alice", "next")
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != 2 {
		t.Fatalf("got %+v, want seq 2 (seq 1 resumed past, no error)", f)
	}
}

func TestResumeOfManyRoomsTheUserLeftIsOneRefusal(t *testing.T) {
	s := newStack(t, 1, hub.Config{LiveHold: 5 * time.Second})
	s.world.room("r1", "alice", "bob")
	b := s.dialWith(0, "bob", &client.WSOptions{NoResume: true})
	rooms := map[string]int64{"r1": 0}
	var left []string
	for i := range 100 {
		id := fmt.Sprintf("left-%03d", i)
		rooms[id] = 7
		left = append(left, id)
	}
	// Every reconnect sends it again: ten of them stay within the strikes
	// (40), where one strike per room closed the socket in the first.
	for range 10 {
		send(t, b, api.ClientFrame{Type: api.FrameResume, Rooms: rooms})
		f := expectType(t, b, api.FrameError)
		if f.Code != "not_a_member" || !slices.Equal(f.RoomIDs, left) {
			t.Fatalf("got %s for %d rooms, want not_a_member for the 100 left rooms", f.Code, len(f.RoomIDs))
		}
	}
	send(t, b, api.ClientFrame{Type: api.FramePing})
	expectType(t, b, api.FramePong)
	s.world.post("r1", "alice", "still live")
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != 1 {
		t.Fatalf("got %+v", f)
	}
}

// TestCatchUpDeliversWhatTheFanOutMissed: events published while the
// replica's fan-out subscription was broken never come to it; when the
// subscription is back, CatchUp fetches them, in order, once, and acks
// the sender, though the room stays quiet afterwards.
func TestCatchUpDeliversWhatTheFanOutMissed(t *testing.T) {
	s := newStack(t, 1, hub.Config{})
	s.world.room("r1", "alice", "bob")
	a := s.live(0, "alice")
	b := s.live(0, "bob")
	s.world.mu.Lock()
	s.world.dropFor[0] = 3 // the subscription is down for three batches
	s.world.mu.Unlock()
	s.world.post("r1", "bob", "missed 1")
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c-missed", Text: "missed 2"})
	eventually(t, "the send stored", func() bool { return s.world.submissions.Load() == 1 })
	s.world.post("r1", "bob", "missed 3")
	quiet(t, b, 100*time.Millisecond)

	s.hubs[0].CatchUp()
	for seq := int64(1); seq <= 3; seq++ {
		if f := expectType(t, b, api.FrameEvent); f.Event.Seq != seq {
			t.Fatalf("bob got seq %d, want %d", f.Event.Seq, seq)
		}
	}
	var seqs []int64
	var ack api.ServerFrame
	for len(seqs) < 3 || ack.Type == "" {
		switch f := next(t, a); f.Type {
		case api.FrameEvent:
			seqs = append(seqs, f.Event.Seq)
		case api.FrameAck:
			ack = f
		}
	}
	if !slices.Equal(seqs, []int64{1, 2, 3}) || ack.ClientID != "c-missed" || ack.Seq != 2 {
		t.Fatalf("alice got seqs %v and ack %+v, want 1,2,3 and the ack of seq 2", seqs, ack)
	}
	// The second pass a second later finds nothing new: no duplicate.
	quiet(t, b, 1500*time.Millisecond)
	s.world.post("r1", "alice", "live")
	if f := expectType(t, b, api.FrameEvent); f.Event.Seq != 4 {
		t.Fatalf("got seq %d, want 4", f.Event.Seq)
	}
}

// TestAnIdleSocketHoldsNoWriterGoroutine: once its frames are written, an
// idle socket costs its reader goroutine only; the writer starts again
// when something is queued.
func TestAnIdleSocketHoldsNoWriterGoroutine(t *testing.T) {
	const n = 20
	s := newStack(t, 1, hub.Config{MaxConnsPerUser: n})
	s.world.room("r1", "alice")
	before := runtime.NumGoroutine()
	conns := make([]*client.WS, n)
	for i := range conns {
		conns[i] = s.live(0, "alice") // hello, the resume, a ping answered
	}
	// Each socket: the test client's reader and the server's reader
	// (and a few of the HTTP clients the hub's upstream adapters use).
	want := before + 2*n + 6
	eventually(t, "idle writers end", func() bool { return runtime.NumGoroutine() <= want })
	// A frame for every socket starts writers again, and they deliver.
	s.world.post("r1", "alice", "to everyone")
	for _, c := range conns {
		if f := nextSkipping(t, c, api.FrameAck); f.Type != api.FrameEvent || f.Event.Text != "to everyone" {
			t.Fatalf("got %+v", f)
		}
	}
	eventually(t, "idle writers end again", func() bool { return runtime.NumGoroutine() <= want })
}

// TestAnIdleSocketIsPingedAndKeptOpen: the server pings every
// PingInterval, and a client that answers the pings stays connected past
// PongWait without sending anything else.
func TestAnIdleSocketIsPingedAndKeptOpen(t *testing.T) {
	s := newStack(t, 1, hub.Config{PingInterval: 40 * time.Millisecond, PongWait: 200 * time.Millisecond})
	d := websocket.Dialer{Subprotocols: []string{api.Subprotocol, api.BearerProtocolPref + s.token("alice")}}
	c, _, err := d.Dial(s.urls[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var pings atomic.Int32
	c.SetPingHandler(func(data string) error {
		pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	// Read (control frames are handled while reading) for five PongWaits.
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		_, _, err := c.ReadMessage() // the hello, then nothing
		if err == nil {
			continue
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("the socket ended: %v, after %d pings", err, pings.Load())
		}
		break
	}
	if got := pings.Load(); got < 10 {
		t.Fatalf("%d pings in a second, want about 25", got)
	}
}

// TestASilentClientIsClosedForNoHeartbeat: a client that answers no ping
// and sends nothing is closed with 1001 once PongWait has passed.
func TestASilentClientIsClosedForNoHeartbeat(t *testing.T) {
	s := newStack(t, 1, hub.Config{PingInterval: 40 * time.Millisecond, PongWait: 150 * time.Millisecond})
	d := websocket.Dialer{Subprotocols: []string{api.Subprotocol, api.BearerProtocolPref + s.token("alice")}}
	c, _, err := d.Dial(s.urls[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetPingHandler(func(string) error { return nil }) // no pong
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("the socket ended with %v, want close 1001", err)
		}
		return
	}
}
