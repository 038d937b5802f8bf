package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
	"github.com/papochat/papo/services/notification/internal/notify"
	"github.com/papochat/papo/services/notification/internal/push"
)

// receiver is a real HTTP server standing behind the push binding: it
// records every push and answers with the status set for its target.
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	pushes []received
	status map[string][]int // target URL -> statuses to answer, in turn
}

type received struct {
	Path   string
	Target string
	Body   map[string]any
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{status: map[string][]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		target := req.Header.Get(push.TargetHeader)
		r.mu.Lock()
		r.pushes = append(r.pushes, received{Path: req.URL.Path, Target: target, Body: body})
		code := http.StatusOK
		if s := r.status[target]; len(s) > 0 {
			code = s[0]
			if len(s) > 1 {
				r.status[target] = s[1:]
			}
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// answer makes the receiver answer pushes to target with codes, the last
// one for good.
func (r *receiver) answer(target string, codes ...int) {
	r.mu.Lock()
	r.status[target] = codes
	r.mu.Unlock()
}

func (r *receiver) to(target string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, p := range r.pushes {
		if p.Target == target {
			out = append(out, p)
		}
	}
	return out
}

func (r *receiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pushes)
}

// Fakes of the other services, in memory.
type rooms map[string]notify.Room

func (r rooms) Room(_ context.Context, id string) (notify.Room, error) {
	room, ok := r[id]
	if !ok {
		return notify.Room{}, errors.New("no such room")
	}
	return room, nil
}

type presence struct {
	mu     sync.Mutex
	online map[string]bool
	fail   error
}

func (p *presence) Online(_ context.Context, ids []string) (map[string]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return nil, p.fail
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = p.online[id]
	}
	return out, nil
}

func (p *presence) set(id string, on bool) {
	p.mu.Lock()
	p.online[id] = on
	p.mu.Unlock()
}

type users map[string]string

func (u users) Usernames(_ context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for _, id := range ids {
		out[id] = u[id]
	}
	return out, nil
}

type deadLetters struct {
	mu  sync.Mutex
	got []push.Notification
}

func (d *deadLetters) DeadLetter(_ context.Context, _ device.Device, n push.Notification, _ error) error {
	d.mu.Lock()
	d.got = append(d.got, n)
	d.mu.Unlock()
	return nil
}

func (d *deadLetters) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.got)
}

// clock is a manual clock shared by the replicas of a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const window = time.Minute

// fixture is a room "general" with alice, bob and carol, a DM between
// alice and bob, one webhook device each for bob and carol, and a
// receiver behind the binding.
type fixture struct {
	t        *testing.T
	store    *memstore.Store
	recv     *receiver
	clock    *clock
	presence *presence
	devices  *device.Registry
	modes    *mode.Store
	dead     *deadLetters
	rooms    rooms
	bobURL   string
	carolURL string
	bobDev   device.Device
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		t:        t,
		store:    memstore.New(),
		recv:     newReceiver(t),
		clock:    &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		presence: &presence{online: map[string]bool{}},
		dead:     &deadLetters{},
		rooms: rooms{
			"general": {ID: "general", Name: "general", Kind: api.RoomPublic, Members: []string{"alice", "bob", "carol"}},
			"dm_ab":   {ID: "dm_ab", Kind: api.RoomDM, Members: []string{"alice", "bob"}},
		},
		bobURL:   "https://hooks.example/bob",
		carolURL: "https://hooks.example/carol",
	}
	f.devices = device.NewRegistry(f.store, device.NewIndex(f.store, device.IndexOptions{}))
	f.modes = mode.NewStore(f.store)
	f.bobDev = f.addDevice("bob", f.bobURL)
	f.addDevice("carol", f.carolURL)
	return f
}

func (f *fixture) addDevice(user, url string) device.Device {
	f.t.Helper()
	d, err := device.Registration{Platform: device.Webhook, URL: url}.Validate()
	if err != nil {
		f.t.Fatal(err)
	}
	d, err = f.devices.Add(context.Background(), user, d)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// replica returns an engine over the fixture's store: several of them
// are replicas of the service.
func (f *fixture) replica() *notify.Engine {
	return notify.New(notify.Deps{
		Store:       f.store,
		Rooms:       f.rooms,
		Presence:    f.presence,
		Users:       users{"alice": "alice", "bob": "bob", "carol": "carol"},
		Devices:     f.devices,
		Modes:       f.modes,
		Pusher:      push.NewSender(push.NewHTTPBinding(f.recv.srv.URL), push.Options{}),
		DeadLetters: f.dead,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, notify.Options{Window: window, Now: f.clock.Now, Attempts: 3, Backoff: time.Millisecond})
}

func batch(room string, evs ...api.Event) events.RoomEventBatch {
	for i := range evs {
		evs[i].RoomID, evs[i].Type = room, api.EventMessage
	}
	return events.RoomEventBatch{RoomID: room, Events: evs}
}

func msg(seq int64, sender, text string) api.Event {
	return api.Event{Seq: seq, SenderID: sender, Text: text, ID: fmt.Sprint("e", seq)}
}

func (f *fixture) handle(e *notify.Engine, b events.RoomEventBatch) {
	f.t.Helper()
	if err := e.Handle(context.Background(), b); err != nil {
		f.t.Fatal(err)
	}
}

// closeWindow moves the clock past the window and flushes on each replica.
func (f *fixture) closeWindow(es ...*notify.Engine) {
	f.clock.advance(window + time.Second)
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Add(1)
		go func() { defer wg.Done(); e.FlushDue(context.Background()) }()
	}
	wg.Wait()
}

func TestAnOfflineMemberGetsOneCoalescedPushForABurst(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "hi"), msg(2, "alice", "anyone?")))
	f.handle(e, batch("general", msg(3, "alice", "hello?")))
	if n := f.recv.total(); n != 0 {
		t.Fatalf("%d pushes before the window closed", n)
	}
	f.closeWindow(e)
	got := f.recv.to(f.bobURL)
	if len(got) != 1 {
		t.Fatalf("bob got %d pushes, want 1", len(got))
	}
	if body, want := got[0].Body["body"], "3 new messages in #general"; body != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	if got[0].Path != push.WebhookPath || got[0].Body["type"] != "papo.notification" || got[0].Body["count"] != 3.0 {
		t.Errorf("push = %+v", got[0])
	}
	if n := len(f.recv.to(f.carolURL)); n != 1 {
		t.Errorf("carol got %d pushes, want 1", n)
	}
}

func TestTheSenderIsNotPushed(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "bob", "hi")))
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 0 {
		t.Fatalf("the sender got %d pushes", n)
	}
	if n := len(f.recv.to(f.carolURL)); n != 1 {
		t.Fatalf("carol got %d pushes, want 1", n)
	}
}

func TestAMessageAfterTheWindowOpensANewOne(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "a")))
	f.closeWindow(e)
	f.handle(e, batch("general", msg(2, "alice", "b")))
	f.clock.advance(window / 2)
	e.FlushDue(context.Background())
	if n := len(f.recv.to(f.bobURL)); n != 1 {
		t.Fatalf("bob got %d pushes inside the second window, want 1", n)
	}
	f.closeWindow(e)
	got := f.recv.to(f.bobURL)
	if len(got) != 2 || got[1].Body["body"] != "1 new message in #general" {
		t.Fatalf("pushes = %+v", got)
	}
}

func TestOnlineMembersAreNotPushedUnlessMentioned(t *testing.T) {
	f := newFixture(t)
	f.presence.set("bob", true)
	f.presence.set("carol", true)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "hi all"), msg(2, "alice", "ping @Carol.")))
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 0 {
		t.Errorf("online bob got %d pushes", n)
	}
	got := f.recv.to(f.carolURL)
	if len(got) != 1 {
		t.Fatalf("mentioned carol got %d pushes, want 1", len(got))
	}
	if body := got[0].Body["body"]; body != "1 new message in #general (1 mention)" {
		t.Errorf("body = %q", body)
	}
}

func TestADirectMessageCountsAsAMention(t *testing.T) {
	f := newFixture(t)
	f.presence.set("bob", true)
	e := f.replica()
	f.handle(e, batch("dm_ab", msg(1, "alice", "psst"), msg(2, "alice", "there?")))
	f.closeWindow(e)
	got := f.recv.to(f.bobURL)
	if len(got) != 1 || got[0].Body["body"] != "2 new messages from alice" {
		t.Fatalf("pushes to bob = %+v", got)
	}
}

func TestMuteModes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.modes.Set(ctx, "bob", "general", mode.None); err != nil {
		t.Fatal(err)
	}
	if err := f.modes.Set(ctx, "carol", "general", mode.Mentions); err != nil {
		t.Fatal(err)
	}
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "hi @bob"), msg(2, "alice", "hi all")))
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 0 {
		t.Errorf("bob muted the room but got %d pushes", n)
	}
	if n := len(f.recv.to(f.carolURL)); n != 0 {
		t.Errorf("carol wants mentions only but got %d pushes", n)
	}
	f.handle(e, batch("general", msg(3, "alice", "@carol look")))
	f.closeWindow(e)
	if got := f.recv.to(f.carolURL); len(got) != 1 || got[0].Body["count"] != 1.0 {
		t.Errorf("carol's pushes after a mention = %+v", got)
	}
}

func TestMutingDuringTheWindowCancelsThePush(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "hi")))
	if err := f.modes.Set(context.Background(), "bob", "general", mode.None); err != nil {
		t.Fatal(err)
	}
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 0 {
		t.Fatalf("bob muted during the window but got %d pushes", n)
	}
}

func TestComingOnlineDuringTheWindowCancelsThePush(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "hi")))
	f.presence.set("bob", true)
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 0 {
		t.Fatalf("bob came online but got %d pushes", n)
	}
}

func TestAGoneDeviceIsRemoved(t *testing.T) {
	f := newFixture(t)
	f.recv.answer(f.bobURL, http.StatusGone)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "hi")))
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 1 {
		t.Fatalf("bob's device was tried %d times, want 1 (no retry of a 410)", n)
	}
	ds, err := f.devices.List(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 0 {
		t.Fatalf("bob still has %d devices after a 410", len(ds))
	}
	if f.dead.count() != 0 {
		t.Errorf("a gone device was dead-lettered")
	}
}

func TestARedeliveredEventIsNeitherCountedNorPushedTwice(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	b := batch("general", msg(1, "alice", "a"), msg(2, "alice", "b"))
	f.handle(e, b)
	f.handle(e, b) // redelivered inside the window
	f.closeWindow(e)
	f.handle(e, b) // and again after the push
	f.closeWindow(e)
	got := f.recv.to(f.bobURL)
	if len(got) != 1 {
		t.Fatalf("bob got %d pushes, want 1", len(got))
	}
	if got[0].Body["count"] != 2.0 {
		t.Fatalf("count = %v, want 2", got[0].Body["count"])
	}
}

func TestTwoReplicasNeverBothPush(t *testing.T) {
	f := newFixture(t)
	a, b := f.replica(), f.replica()
	ev := batch("general", msg(1, "alice", "a"), msg(2, "alice", "b"), msg(3, "alice", "c"))
	// Both replicas get the same batch at once (a redelivery racing the
	// first delivery), then both flush at once.
	var wg sync.WaitGroup
	for _, e := range []*notify.Engine{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); f.handle(e, ev) }()
	}
	wg.Wait()
	f.closeWindow(a, b)
	got := f.recv.to(f.bobURL)
	if len(got) != 1 || got[0].Body["count"] != 3.0 {
		t.Fatalf("pushes to bob = %+v, want one with count 3", got)
	}
}

func TestAWindowWhoseReplicaStoppedIsTakenOver(t *testing.T) {
	f := newFixture(t)
	dead, alive := f.replica(), f.replica()
	f.handle(dead, batch("general", msg(1, "alice", "a")))
	// dead never flushes; past the window, alive counts the next event
	// into the stale window and flushes it.
	f.clock.advance(window + time.Second)
	f.handle(alive, batch("general", msg(2, "alice", "b")))
	alive.FlushDue(context.Background())
	got := f.recv.to(f.bobURL)
	if len(got) != 1 || got[0].Body["count"] != 2.0 {
		t.Fatalf("pushes to bob = %+v, want one with count 2", got)
	}
}

func TestAFailingPushIsRetriedThenDeadLettered(t *testing.T) {
	f := newFixture(t)
	f.recv.answer(f.bobURL, http.StatusServiceUnavailable, http.StatusOK)
	f.recv.answer(f.carolURL, http.StatusInternalServerError)
	e := f.replica()
	f.handle(e, batch("general", msg(1, "alice", "a")))
	f.closeWindow(e)
	if n := len(f.recv.to(f.bobURL)); n != 2 {
		t.Errorf("bob's push took %d attempts, want 2 (503 then 200)", n)
	}
	if n := len(f.recv.to(f.carolURL)); n != 3 {
		t.Errorf("carol's push took %d attempts, want 3", n)
	}
	if n := f.dead.count(); n != 1 {
		t.Errorf("%d pushes dead-lettered, want 1", n)
	}
}

func TestAnUnreachableServiceAsksForARetry(t *testing.T) {
	f := newFixture(t)
	f.presence.fail = errors.New("presence is down")
	e := f.replica()
	if err := e.Handle(context.Background(), batch("general", msg(1, "alice", "a"))); err == nil {
		t.Fatal("Handle succeeded without presence")
	}
	// Once presence answers, the retried batch is counted once.
	f.presence.fail = nil
	f.handle(e, batch("general", msg(1, "alice", "a")))
	f.closeWindow(e)
	if got := f.recv.to(f.bobURL); len(got) != 1 || got[0].Body["count"] != 1.0 {
		t.Fatalf("pushes to bob = %+v", got)
	}
}

func TestRunFlushesWhenTheWindowCloses(t *testing.T) {
	f := newFixture(t)
	e := notify.New(notify.Deps{
		Store: f.store, Rooms: f.rooms, Presence: f.presence, Users: users{},
		Devices: f.devices, Modes: f.modes,
		Pusher:      push.NewSender(push.NewHTTPBinding(f.recv.srv.URL), push.Options{}),
		DeadLetters: f.dead, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, notify.Options{Window: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	f.handle(e, batch("general", msg(1, "alice", "a"), msg(2, "alice", "b")))
	waitFor(t, func() bool { return len(f.recv.to(f.bobURL)) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.recv.to(f.bobURL); len(got) != 1 || got[0].Body["count"] != 2.0 {
		t.Fatalf("pushes to bob = %+v", got)
	}
}

func TestMentions(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"@bob hi", true},
		{"hi @Bob", true},
		{"thanks @bob.", true},
		{"(@bob)", true},
		{"hi @bobby", false},
		{"mail bob@bob.com", false},
		{"@bob.smith", false},
		{"bob", false},
	} {
		if got := notify.Mentions(tc.text, "bob"); got != tc.want {
			t.Errorf("Mentions(%q, bob) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		<-tick.C
	}
}

// barrierStore holds the first two reads of a window until both have
// arrived, so two replicas' flushes both see the window before either
// claims it: the race the claim must settle. (Decisions read windows with
// BulkGet, flushes with Get.)
type barrierStore struct {
	*memstore.Store
	mu   sync.Mutex
	n    int
	both chan struct{}
}

func (b *barrierStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	it, err := b.Store.Get(ctx, key)
	if strings.HasPrefix(key, "window|") {
		b.mu.Lock()
		b.n++
		mine := b.n
		if mine == 2 {
			close(b.both)
		}
		b.mu.Unlock()
		if mine <= 2 {
			select {
			case <-b.both:
			case <-time.After(5 * time.Second):
			}
		}
	}
	return it, err
}

func TestTwoReplicasFlushingOneWindowAtOncePushOnce(t *testing.T) {
	f := newFixture(t)
	// Only bob's window, so both flushes meet on it.
	f.rooms["general"] = notify.Room{ID: "general", Name: "general", Members: []string{"alice", "bob"}}
	bs := &barrierStore{Store: f.store, both: make(chan struct{})}
	replica := func() *notify.Engine {
		return notify.New(notify.Deps{
			Store: bs, Rooms: f.rooms, Presence: f.presence, Users: users{},
			Devices: f.devices, Modes: f.modes,
			Pusher:      push.NewSender(push.NewHTTPBinding(f.recv.srv.URL), push.Options{}),
			DeadLetters: f.dead, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, notify.Options{Window: window, Now: f.clock.Now})
	}
	a, b := replica(), replica()
	f.handle(a, batch("general", msg(1, "alice", "a")))
	// Past the window, b counts a late event and takes the window over
	// while a still has it scheduled: both flush it at the same moment.
	f.clock.advance(window + time.Second)
	f.handle(b, batch("general", msg(2, "alice", "b")))
	f.closeWindow(a, b)
	got := f.recv.to(f.bobURL)
	if len(got) != 1 || got[0].Body["count"] != 2.0 {
		t.Fatalf("pushes to bob = %+v, want one with count 2", got)
	}
}

// TestAWindowWhoseReplicaStoppedIsSwept: a window nobody counts into
// again after its replica stopped is flushed by another replica's sweep,
// once, and only after the grace its owner had.
func TestAWindowWhoseReplicaStoppedIsSwept(t *testing.T) {
	f := newFixture(t)
	dead, alive := f.replica(), f.replica()
	f.handle(dead, batch("general", msg(1, "alice", "a"), msg(2, "alice", "b")))

	f.clock.advance(window + time.Second) // due, but within the owner's grace
	if err := alive.SweepOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.recv.total(); n != 0 {
		t.Fatalf("%d pushes swept within the owner's grace", n)
	}

	f.clock.advance(2 * time.Minute)
	if err := alive.SweepOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.recv.to(f.bobURL); len(got) != 1 || got[0].Body["count"] != 2.0 {
		t.Fatalf("pushes to bob = %+v, want one with count 2", got)
	}
	if n := len(f.recv.to(f.carolURL)); n != 1 {
		t.Fatalf("carol got %d pushes, want 1", n)
	}
	// Nothing twice: another sweep, and the owner coming back.
	if err := alive.SweepOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead.FlushDue(context.Background())
	if n := f.recv.total(); n != 2 {
		t.Fatalf("%d pushes in all, want 2", n)
	}
}

// TestASweepPushesNothingItsReplicaFlushed: windows flushed by the
// replica that opened them are not pushed again by a sweep.
func TestASweepPushesNothingItsReplicaFlushed(t *testing.T) {
	f := newFixture(t)
	e, other := f.replica(), f.replica()
	f.handle(e, batch("general", msg(1, "alice", "a")))
	f.closeWindow(e)
	if n := f.recv.total(); n != 2 {
		t.Fatalf("%d pushes at the window's close, want bob's and carol's", n)
	}
	f.clock.advance(2 * time.Minute)
	if err := other.SweepOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.recv.total(); n != 2 {
		t.Fatalf("%d pushes after the sweep, want still 2", n)
	}
}

// TestASweepFarBehindCatchesUp: after every replica was down for hours, the
// sweeps catch up minute by minute, a bounded stretch each, and the
// windows of those hours are pushed.
func TestASweepFarBehindCatchesUp(t *testing.T) {
	f := newFixture(t)
	dead, alive := f.replica(), f.replica()
	if err := alive.SweepOrphans(context.Background()); err != nil { // sets the cursor
		t.Fatal(err)
	}
	f.clock.advance(3 * time.Hour)
	f.handle(dead, batch("general", msg(1, "alice", "a"))) // due three hours after the cursor
	f.clock.advance(2 * time.Hour)
	for i, want := range []int{0, 2} { // 120 minutes a sweep: the window is in the second stretch
		if err := alive.SweepOrphans(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := f.recv.total(); n != want {
			t.Fatalf("after sweep %d: %d pushes, want %d", i+1, n, want)
		}
	}
}

// TestABatchOfSeveralRoomsIsGroupedByEachEventsRoom: a batch of several
// rooms carries no room id of its own; each event's room decides. A batch
// of one room whose events lack room ids (an older message service) still
// counts, and an event with no room at all is skipped.
func TestABatchOfSeveralRoomsIsGroupedByEachEventsRoom(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	several := events.RoomEventBatch{Events: []api.Event{
		{RoomID: "general", Seq: 1, Type: api.EventMessage, SenderID: "alice", Text: "a"},
		{RoomID: "dm_ab", Seq: 1, Type: api.EventMessage, SenderID: "alice", Text: "psst"},
		{RoomID: "general", Seq: 2, Type: api.EventMessage, SenderID: "alice", Text: "b"},
		{Seq: 9, Type: api.EventMessage, SenderID: "alice", Text: "nowhere"},
	}}
	f.handle(e, several)
	f.handle(e, events.RoomEventBatch{RoomID: "general", Events: []api.Event{{Seq: 3, Type: api.EventMessage, SenderID: "alice", Text: "c"}}})
	f.closeWindow(e)
	var general, dm int
	for _, p := range f.recv.to(f.bobURL) {
		switch p.Body["room_id"] {
		case "general":
			general++
			if p.Body["count"] != 3.0 {
				t.Errorf("bob's push for general counts %v, want 3", p.Body["count"])
			}
		case "dm_ab":
			dm++
			if p.Body["body"] != "1 new message from alice" {
				t.Errorf("bob's DM push says %q", p.Body["body"])
			}
		default:
			t.Errorf("a push for room %v", p.Body["room_id"])
		}
	}
	if general != 1 || dm != 1 {
		t.Fatalf("bob got %d pushes for general and %d for the DM, want 1 and 1", general, dm)
	}
	if got := f.recv.to(f.carolURL); len(got) != 1 || got[0].Body["count"] != 3.0 {
		t.Fatalf("carol's pushes = %+v, want one counting 3", got)
	}
}

// TestARoomThatCannotBeLookedUpDoesNotHoldBackTheOthers: the batch asks
// for a retry, but the other rooms of it are counted meanwhile, and the
// retry counts them only once.
func TestARoomThatCannotBeLookedUpDoesNotHoldBackTheOthers(t *testing.T) {
	f := newFixture(t)
	e := f.replica()
	b := events.RoomEventBatch{Events: []api.Event{
		{RoomID: "gone", Seq: 1, Type: api.EventMessage, SenderID: "alice", Text: "a"},
		{RoomID: "general", Seq: 1, Type: api.EventMessage, SenderID: "alice", Text: "b"},
	}}
	if err := e.Handle(context.Background(), b); err == nil {
		t.Fatal("Handle succeeded for a room that cannot be looked up")
	}
	f.rooms["gone"] = notify.Room{ID: "gone", Name: "gone", Members: []string{"alice", "bob"}}
	f.handle(e, b)
	f.closeWindow(e)
	for _, room := range []string{"general", "gone"} {
		n := 0
		for _, p := range f.recv.to(f.bobURL) {
			if p.Body["room_id"] == room {
				n++
				if p.Body["count"] != 1.0 {
					t.Errorf("bob's push for %s counts %v, want 1", room, p.Body["count"])
				}
			}
		}
		if n != 1 {
			t.Errorf("bob got %d pushes for %s, want 1", n, room)
		}
	}
}
