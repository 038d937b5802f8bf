package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/services/ws/internal/hub"
	"github.com/papochat/papo/services/ws/internal/upstream"
)

// stack is an in-process papo for the hub: ws replicas (hubs) served over
// real WebSockets, a fake sidecar answering the message and auth internal
// routes over real HTTP (so the upstream adapters are exercised too), and
// a fake broker that persists submissions like the message service and
// fans room events out to every replica in order.
type stack struct {
	t     *testing.T
	iss   *authntest.Issuer
	world *world
	hubs  []*hub.Hub
	urls  []string
	regs  []*prometheus.Registry // each hub's metrics
}

func newStack(t *testing.T, replicas int, cfg hub.Config) *stack {
	t.Helper()
	return newTracedStack(t, replicas, cfg, nil)
}

// newTracedStack is newStack whose hubs trace with tp (nil: not at all).
func newTracedStack(t *testing.T, replicas int, cfg hub.Config, tp trace.TracerProvider) *stack {
	t.Helper()
	s := &stack{t: t, iss: authntest.New(), world: newWorld()}
	side := httptest.NewServer(s.world.sidecar())
	t.Cleanup(side.Close)
	u, _ := url.Parse(side.URL)
	inv := invoke.New(u.Port(), "")
	for i := 0; i < replicas; i++ {
		reg := prometheus.NewRegistry()
		cfg := cfg
		cfg.Replica = fmt.Sprintf("ws-%d", i+1)
		h := hub.New(cfg, hub.Deps{
			Verifier:  s.iss.Verifier(),
			Sessions:  upstream.Sessions{Invoke: inv, AppID: "auth"},
			Messages:  upstream.Messages{Invoke: inv, AppID: "message"},
			Publisher: s.world,
			Metrics:   hub.NewMetrics(reg),
			Traces:    tp,
		})
		s.regs = append(s.regs, reg)
		s.world.addReplica(h)
		mux := http.NewServeMux()
		mux.Handle("/ws", h)
		srv := httptest.NewServer(mux)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = h.Shutdown(ctx)
			srv.Close()
		})
		s.hubs = append(s.hubs, h)
		s.urls = append(s.urls, "ws"+srv.URL[len("http"):]+"/ws")
	}
	t.Cleanup(s.world.stop)
	return s
}

func (s *stack) token(user string) string { return s.iss.Token(user, "sess-"+user, time.Hour) }

// dial connects user to replica i, waits for hello and resumes nothing,
// as clients do.
func (s *stack) dial(i int, user string) *client.WS {
	s.t.Helper()
	return s.dialWith(i, user, nil)
}

// dialWith is dial with options (a resume, or none).
func (s *stack) dialWith(i int, user string, opts *client.WSOptions) *client.WS {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := client.DialWS(ctx, s.urls[i], s.token(user), opts)
	if err != nil {
		s.t.Fatalf("dial replica %d as %s: %v", i, user, err)
	}
	s.t.Cleanup(func() { _ = w.Close() })
	return w
}

// live dials and sends a ping, so live delivery starts at once and the
// test need not wait for the hold after hello.
func (s *stack) live(i int, user string) *client.WS {
	s.t.Helper()
	w := s.dial(i, user)
	send(s.t, w, api.ClientFrame{Type: api.FramePing})
	expectType(s.t, w, api.FramePong)
	return w
}

func send(t *testing.T, w *client.WS, f api.ClientFrame) {
	t.Helper()
	if err := w.Send(f); err != nil {
		t.Fatalf("send %s: %v", f.Type, err)
	}
}

// next reads the next frame, failing after 5 s.
func next(t *testing.T, w *client.WS) api.ServerFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := w.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

// nextSkipping reads the next frame not of the skipped types.
func nextSkipping(t *testing.T, w *client.WS, skip ...string) api.ServerFrame {
	t.Helper()
	for {
		f := next(t, w)
		skipped := false
		for _, s := range skip {
			skipped = skipped || f.Type == s
		}
		if !skipped {
			return f
		}
	}
}

func expectType(t *testing.T, w *client.WS, typ string) api.ServerFrame {
	t.Helper()
	f := next(t, w)
	if f.Type != typ {
		t.Fatalf("got frame %+v, want type %s", f, typ)
	}
	return f
}

func expectError(t *testing.T, w *client.WS, code, ref string) {
	t.Helper()
	f := next(t, w)
	if f.Type != api.FrameError || f.Code != code || f.Ref != ref {
		t.Fatalf("got %+v, want error %s ref %q", f, code, ref)
	}
}

// quiet asserts that no frame arrives within d.
func quiet(t *testing.T, w *client.WS, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if f, err := w.Read(ctx); err == nil {
		t.Fatalf("got unexpected frame %+v", f)
	}
}

// closed waits for the socket to end and returns its close code.
func closed(t *testing.T, w *client.WS) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := w.ReadRaw(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("socket still open")
			}
			return client.CloseCode(err)
		}
	}
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// world plays the message service, the auth service and the brokers.
type world struct {
	mu       sync.Mutex
	rooms    map[string]*fakeRoom
	revoked  map[string]bool
	reads    []string
	replicas []*replica

	failPublish atomic.Bool
	// failSubmit makes the message service's submit route answer 503.
	failSubmit atomic.Bool
	// gate, when set, holds each submission (call or publish) until it
	// receives; entered is told when one is waiting there.
	gate    chan struct{}
	entered chan struct{}
	// dropFor makes replica i miss the next n room event batches.
	dropFor     map[int]int
	publishes   map[string]int // topic → pub/sub messages
	callTrace   string         // the traceparent of the submit call being stored
	submissions atomic.Int64
	history     atomic.Int64 // history fetches
}

type fakeRoom struct {
	members  map[string]bool
	events   []api.Event
	byClient map[string]int64
}

type replica struct {
	h    *hub.Hub
	in   chan func()
	done chan struct{}
}

func newWorld() *world {
	return &world{rooms: map[string]*fakeRoom{}, revoked: map[string]bool{}, dropFor: map[int]int{}, publishes: map[string]int{}}
}

func (w *world) addReplica(h *hub.Hub) {
	r := &replica{h: h, in: make(chan func(), 100000), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for f := range r.in {
			f()
		}
	}()
	w.mu.Lock()
	w.replicas = append(w.replicas, r)
	w.mu.Unlock()
}

func (w *world) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.replicas {
		close(r.in)
		<-r.done
	}
	w.replicas = nil
}

// room creates a room with members (no events: last_seq 0).
func (w *world) room(id string, members ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := &fakeRoom{members: map[string]bool{}, byClient: map[string]int64{}}
	for _, m := range members {
		r.members[m] = true
	}
	w.rooms[id] = r
}

// appendLocked persists an event and returns it; w.mu is held.
func (w *world) appendLocked(roomID string, e api.Event) api.Event {
	r := w.rooms[roomID]
	e.RoomID = roomID
	e.Seq = int64(len(r.events)) + 1
	e.ID = fmt.Sprintf("%s-%d", roomID, e.Seq)
	e.CreatedAt = time.Now().UTC()
	r.events = append(r.events, e)
	return e
}

// fanoutLocked hands a batch to every replica in order; w.mu is held.
func (w *world) fanoutLocked(b events.RoomEventBatch) {
	for i, r := range w.replicas {
		if w.dropFor[i] > 0 {
			w.dropFor[i]--
			continue
		}
		r.in <- func() { r.h.RoomEvents(b) }
	}
}

// member changes membership with a member_joined or member_left event.
func (w *world) member(roomID, userID string, joined bool) api.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	typ := api.EventMemberLeft
	if joined {
		typ = api.EventMemberJoined
	}
	e := w.appendLocked(roomID, api.Event{Type: typ, SenderID: userID, UserID: userID})
	w.rooms[roomID].members[userID] = joined
	w.fanoutLocked(events.RoomEventBatch{RoomID: roomID, Events: []api.Event{e}})
	return e
}

// post persists a message as if sent over REST and fans it out.
func (w *world) post(roomID, userID, text string) api.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.appendLocked(roomID, api.Event{Type: api.EventMessage, SenderID: userID, Text: text})
	w.fanoutLocked(events.RoomEventBatch{RoomID: roomID, Events: []api.Event{e}})
	return e
}

func (w *world) count(topic string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.publishes[topic]
}

// PublishJSON implements hub.Publisher.
func (w *world) PublishJSON(_ context.Context, pubsub, topic, _ string, data []byte) error {
	if w.failPublish.Load() {
		return errors.New("broker down")
	}
	if w.gate != nil && topic == events.TopicSubmitted {
		w.entered <- struct{}{}
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.publishes[topic]++
	switch {
	case pubsub == events.PubSub && topic == events.TopicSubmitted:
		var b events.SubmissionBatch
		if err := json.Unmarshal(data, &b); err != nil {
			return err
		}
		w.storeLocked(b, true)
	case pubsub == events.Fanout && topic == events.TopicSignals:
		var b events.SignalBatch
		if err := json.Unmarshal(data, &b); err != nil {
			return err
		}
		for _, r := range w.replicas {
			r.in <- func() { r.h.Signals(b) }
		}
	default:
		return fmt.Errorf("unexpected publish to %s/%s", pubsub, topic)
	}
	return nil
}

// storeLocked persists a batch like the message service: each stored
// event is fanned out; a repeat is acknowledged; a refusal is announced
// when announce is set (a pub/sub delivery) and otherwise only answered
// (a call). It returns each submission's outcome; w.mu is held.
func (w *world) storeLocked(b events.SubmissionBatch, announce bool) []events.Outcome {
	w.submissions.Add(int64(len(b.Submissions)))
	outcomes := make([]events.Outcome, len(b.Submissions))
	for i, s := range b.Submissions {
		out := events.RoomEventBatch{RoomID: s.RoomID, TraceParent: w.callTrace}
		r := w.rooms[s.RoomID]
		key := s.SenderID + "/" + s.ClientID
		switch {
		case r == nil || !r.members[s.SenderID]:
			outcomes[i] = events.Outcome{Code: "not_a_member", Message: "not a member"}
			if announce {
				out.Rejections = append(out.Rejections, events.Rejection{RoomID: s.RoomID, SenderID: s.SenderID,
					ClientID: s.ClientID, Code: "not_a_member", Message: "not a member"})
			}
		case r.byClient[key] > 0:
			outcomes[i] = events.Outcome{Seq: r.byClient[key]}
			out.Acks = append(out.Acks, events.Ack{RoomID: s.RoomID, SenderID: s.SenderID, ClientID: s.ClientID, Seq: r.byClient[key]})
		default:
			e := w.appendLocked(s.RoomID, api.Event{Type: s.Type, SenderID: s.SenderID, ClientID: s.ClientID, Text: s.Text, TargetSeq: s.TargetSeq})
			r.byClient[key] = e.Seq
			outcomes[i] = events.Outcome{Seq: e.Seq}
			out.Events = append(out.Events, e)
		}
		w.fanoutLocked(out)
	}
	return outcomes
}

// sidecar serves the routes the ws service invokes through Dapr.
func (w *world) sidecar() http.Handler {
	mux := http.NewServeMux()
	const msg = "/v1.0/invoke/message/method/internal/v1"
	fail := func(rw http.ResponseWriter, status int, code string) {
		httpapi.Encode(rw, status, httpapi.ErrorBody{Error: httpapi.ErrorDetail{Code: code, Message: code}})
	}
	mux.HandleFunc("GET "+msg+"/users/{uid}/rooms", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		defer w.mu.Unlock()
		out := struct {
			Rooms []api.RoomCursor `json:"rooms"`
		}{Rooms: []api.RoomCursor{}}
		for id, room := range w.rooms {
			if room.members[r.PathValue("uid")] {
				out.Rooms = append(out.Rooms, api.RoomCursor{RoomID: id, LastSeq: int64(len(room.events))})
			}
		}
		httpapi.Encode(rw, http.StatusOK, out)
	})
	mux.HandleFunc("GET "+msg+"/rooms/{id}/events", func(rw http.ResponseWriter, r *http.Request) {
		w.history.Add(1)
		after, err1 := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		limit, err2 := strconv.Atoi(r.URL.Query().Get("limit"))
		if err1 != nil || err2 != nil || limit <= 0 || limit > api.MaxPageLimit {
			fail(rw, http.StatusBadRequest, "invalid_page")
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		room := w.rooms[r.PathValue("id")]
		if room == nil {
			fail(rw, http.StatusNotFound, "room_not_found")
			return
		}
		out := api.EventsResponse{Events: []api.Event{}, LastSeq: int64(len(room.events))}
		for _, e := range room.events {
			if e.Seq > after && len(out.Events) < limit {
				out.Events = append(out.Events, e)
			}
		}
		httpapi.Encode(rw, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1.0/invoke/message/method"+events.SubmitRoute, func(rw http.ResponseWriter, r *http.Request) {
		if w.failSubmit.Load() {
			fail(rw, http.StatusServiceUnavailable, "unavailable")
			return
		}
		var b events.SubmissionBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			fail(rw, http.StatusBadRequest, "invalid_json")
			return
		}
		if w.gate != nil {
			w.entered <- struct{}{}
			<-w.gate
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.publishes["submit"]++
		// Like the message service, the announcement continues the
		// call's trace.
		w.callTrace = r.Header.Get("traceparent")
		defer func() { w.callTrace = "" }()
		httpapi.Encode(rw, http.StatusOK, events.SubmitResult{Outcomes: w.storeLocked(b, false)})
	})
	mux.HandleFunc("POST "+msg+"/rooms/{id}/read", func(rw http.ResponseWriter, r *http.Request) {
		var body struct {
			UserID string `json:"user_id"`
			Seq    int64  `json:"seq"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UserID == "" {
			fail(rw, http.StatusBadRequest, "invalid_json")
			return
		}
		w.mu.Lock()
		w.reads = append(w.reads, fmt.Sprintf("%s/%s/%d", r.PathValue("id"), body.UserID, body.Seq))
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1.0/invoke/auth/method/internal/v1/sessions/{sid}", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		revoked := w.revoked[r.PathValue("sid")]
		w.mu.Unlock()
		if revoked {
			fail(rw, http.StatusNotFound, "session_not_found")
			return
		}
		httpapi.Encode(rw, http.StatusOK, map[string]any{"session_id": r.PathValue("sid"), "active": true})
	})
	return mux
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

func asError(err error, target **client.Error) bool { return errors.As(err, target) }
