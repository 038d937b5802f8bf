package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/launcher"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/sidecar"
)

// pushReceiver stands behind the `push` binding of a notification stack:
// a real local HTTP server that records each push by its target (the
// device's webhook URL) and answers 410 for targets marked gone.
type pushReceiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	byDest map[string][]map[string]any
	raw    map[string][]rawPush // as sent: Web Push bodies are ciphertext
	gone   map[string]bool
}

// rawPush is one push as the binding sent it.
type rawPush struct {
	header http.Header
	body   []byte
}

func newPushReceiver() *pushReceiver {
	r := &pushReceiver{byDest: map[string][]map[string]any{}, raw: map[string][]rawPush{}, gone: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		dest := req.Header.Get("X-Papo-Push-Target")
		r.mu.Lock()
		r.byDest[dest] = append(r.byDest[dest], body)
		r.raw[dest] = append(r.raw[dest], rawPush{header: req.Header.Clone(), body: b})
		gone := r.gone[dest]
		r.mu.Unlock()
		if gone {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	return r
}

func (r *pushReceiver) rawPushes(dest string) []rawPush {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rawPush(nil), r.raw[dest]...)
}

func (r *pushReceiver) pushes(dest string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.byDest[dest]...)
}

// notificationWindow is the coalescing window of the notification stack:
// short, so the test does not wait a minute.
const notificationWindow = 3 * time.Second

// notifyEnv is the notification stack of one profile, started once.
type notifyEnv struct {
	once  sync.Once
	tail  logTail
	stack *launcher.Stack
	recv  *pushReceiver
	err   error
}

var (
	notifyMu   sync.Mutex
	notifyEnvs = map[string]*notifyEnv{}
)

// notificationStack is a stack of its own on profile, with two
// notification replicas and the push binding pointed at a receiver of the
// test.
func notificationStack(t *testing.T, profile string) (*launcher.Stack, *pushReceiver) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts the whole stack")
	}
	notifyMu.Lock()
	env := notifyEnvs[profile]
	if env == nil {
		env = &notifyEnv{}
		notifyEnvs[profile] = env
	}
	notifyMu.Unlock()
	env.tail.showOnFailure(t)
	env.once.Do(func() {
		root, err := launcher.FindRoot(".")
		if err != nil {
			env.err = err
			return
		}
		env.recv = newPushReceiver()
		var log io.Writer = &env.tail
		if *verbose {
			log = io.MultiWriter(os.Stderr, &env.tail)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		env.stack, env.err = launcher.Start(ctx, launcher.Options{
			Root:        root,
			Profile:     profile,
			DataDir:     tempDir(t, "notification-"+profile),
			GatewayAddr: "127.0.0.1:0",
			Log:         log,
			Progress:    testLog{t},
			// The supervisor's alerts outlive this test: the log tail.
			Alerts:   log,
			Replicas: map[string]int{"notification": 2},
			PushURL:  env.recv.srv.URL,
			Env: map[string]string{
				"LOG_LEVEL":                 "warn",
				"GATEWAY_RATE_PER_IP":       "100000",
				"GATEWAY_RATE_PER_USER":     "100000",
				"NOTIFICATION_WINDOW":       notificationWindow.String(),
				"NOTIFICATION_PUSH_BACKOFF": "100ms",
				// A new deployment: every device is in the index, so a
				// device registered through one replica reaches the other
				// only by its devices.changed notice (the fallback would
				// find it too, and hide a broken notice).
				"NOTIFICATION_DEVICE_FALLBACK": "false",
				// A shared store (PostgreSQL) may hold other stacks'
				// presence: keep this one's apart.
				"PRESENCE_KEY_PREFIX": randomName("e2e-"),
			},
		})
		if env.err == nil {
			stacksMu.Lock()
			stacks["notification-"+profile] = env.stack // TestMain stops it
			stacksMu.Unlock()
		}
	})
	if env.err != nil {
		if strings.Contains(env.err.Error(), launcher.ErrInfraMissing.Error()) && os.Getenv("PAPO_REQUIRE_INFRA") != "1" {
			t.Skipf("profile %s: %v (PAPO_REQUIRE_INFRA=1 makes this a failure)", profile, env.err)
		}
		t.Fatalf("start notification stack on %s: %v", profile, env.err)
	}
	return env.stack, env.recv
}

// registerWebhook registers a webhook device for u and returns its URL.
func registerWebhook(t *testing.T, u *user) string {
	t.Helper()
	url := "https://hooks.papo.test/" + u.Username
	var out struct {
		Device struct{ ID string } `json:"device"`
	}
	if err := u.Do(context.Background(), http.MethodPost, "/api/v1/devices",
		map[string]string{"platform": "webhook", "url": url}, &out); err != nil || out.Device.ID == "" {
		t.Fatalf("register device for %s: %v", u.Username, err)
	}
	return url
}

// within polls cond until it holds or timeout passes.
func within(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
	}
}

// stays polls for d that cond keeps holding (a push that must not come).
func stays(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("no longer true: %s", what)
		}
		time.Sleep(100 * time.Millisecond) // polling, bounded by the deadline
	}
}

// TestNotificationsOverTheRealStack: through real sidecars, the broker,
// two notification replicas and the push binding pointed at a receiver,
// an offline member gets exactly one coalesced push for a burst, an
// online one none unless mentioned, a muted room nothing, a 410 removes
// the device, and a redelivered batch pushes nothing twice.
func TestNotificationsOverTheRealStack(t *testing.T) {
	for _, profile := range []string{"local", "kafka-postgres"} {
		t.Run(profile, func(t *testing.T) { notificationsOverTheRealStack(t, profile) })
	}
}

func notificationsOverTheRealStack(t *testing.T, profile string) {
	s, recv := notificationStack(t, profile)
	ctx := context.Background()
	alice := newUser(t, s, "ali")
	bob := newUser(t, s, "bob")     // offline: one coalesced push
	carol := newUser(t, s, "car")   // online: nothing
	eve := newUser(t, s, "eve")     // online but mentioned: one push
	dave := newUser(t, s, "dav")    // muted the room: nothing
	frank := newUser(t, s, "frank") // his provider says 410

	room, err := alice.CreateRoom(ctx, randomName("general"), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*user{bob, carol, eve, dave, frank} {
		if _, err := u.JoinRoom(ctx, room.ID); err != nil {
			t.Fatalf("%s joins: %v", u.Username, err)
		}
	}
	hooks := map[string]string{}
	for _, u := range []*user{bob, carol, eve, dave, frank} {
		hooks[u.Username] = registerWebhook(t, u)
	}
	recv.mu.Lock()
	recv.gone[hooks[frank.Username]] = true
	recv.mu.Unlock()
	if err := dave.Do(ctx, http.MethodPut, "/api/v1/rooms/"+room.ID+"/notifications", map[string]string{"mode": "none"}, nil); err != nil {
		t.Fatalf("mute: %v", err)
	}
	dialGateway(t, carol)
	dialGateway(t, eve)
	within(t, 20*time.Second, "carol and eve online", func() bool {
		ps, err := alice.Presence(ctx, carol.ID, eve.ID)
		return err == nil && len(ps) == 2 && ps[0].Status == api.Online && ps[1].Status == api.Online
	})

	const burst = 5
	for i := range burst {
		text := fmt.Sprintf("message %d", i)
		if i == 2 {
			text = "hey @" + eve.Username + ", look"
		}
		if err := alice.Send(ctx, room.ID, randomName("c"), text); err != nil {
			t.Fatal(err)
		}
	}
	// Every message of the burst reaches bob, counted once. It is normally
	// one push: a second one comes only when an event of the burst reaches
	// a replica after the window closed (a redelivery, or a slow replica
	// under load), and then opens a window of its own.
	counted := func(pushes []map[string]any) (n float64) {
		for _, p := range pushes {
			c, _ := p["count"].(float64)
			n += c
		}
		return n
	}
	within(t, 30*time.Second, "bob's pushes to count the burst", func() bool { return counted(recv.pushes(hooks[bob.Username])) >= burst })
	within(t, 10*time.Second, "eve's push", func() bool { return len(recv.pushes(hooks[eve.Username])) > 0 })
	within(t, 10*time.Second, "frank's device removed after a 410", func() bool {
		var out struct{ Devices []any }
		return frank.Do(ctx, http.MethodGet, "/api/v1/devices", nil, &out) == nil && len(out.Devices) == 0
	})
	// Nothing more may come, in this window or the next.
	stays(t, notificationWindow+2*time.Second, "bob's pushes count the burst once, one push for eve, none for carol and dave", func() bool {
		bp := recv.pushes(hooks[bob.Username])
		ok := counted(bp) == burst && len(bp) <= 2 && len(recv.pushes(hooks[eve.Username])) == 1 &&
			len(recv.pushes(hooks[carol.Username])) == 0 && len(recv.pushes(hooks[dave.Username])) == 0
		if !ok {
			for _, u := range []*user{bob, eve, carol, dave} {
				t.Logf("pushes for %s: %v", u.Username, recv.pushes(hooks[u.Username]))
			}
		}
		return ok
	})
	if bp := recv.pushes(hooks[bob.Username]); len(bp) == 1 {
		if want := fmt.Sprintf("%d new messages in #%s", burst, room.Name); bp[0]["body"] != want {
			t.Fatalf("bob's push = %v, want body %q", bp[0], want)
		}
	} else {
		t.Logf("bob's burst came in %d pushes (an event reached its replica after the window closed): %v", len(bp), bp)
	}
	if e := recv.pushes(hooks[eve.Username])[0]; e["count"] != 1.0 || e["mentions"] != 1.0 {
		t.Fatalf("eve's push = %v, want the one mention", e)
	}
	if n := len(recv.pushes(hooks[frank.Username])); n != 1 {
		t.Fatalf("frank's gone device was tried %d times, want 1", n)
	}

	// A redelivery: the same batch published again on room.events reaches
	// one of the two replicas, which must recognise every event.
	hist, err := alice.EventsAfter(ctx, room.ID, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []api.Event
	for _, ev := range hist.Events {
		if ev.Type == api.EventMessage {
			msgs = append(msgs, ev)
		}
	}
	if len(msgs) != burst {
		t.Fatalf("history holds %d messages, want %d", len(msgs), burst)
	}
	bobBefore := len(recv.pushes(hooks[bob.Username]))
	publish(t, s, events.RoomEventBatch{RoomID: room.ID, Events: msgs})
	publish(t, s, events.RoomEventBatch{RoomID: room.ID, Events: msgs})
	stays(t, notificationWindow+3*time.Second, "no push for a redelivered batch", func() bool {
		return len(recv.pushes(hooks[bob.Username])) == bobBefore && len(recv.pushes(hooks[eve.Username])) == 1
	})
}

// publish puts a payload on room.events through the message service's
// sidecar, over its gRPC API with its Dapr API token, as the message
// service itself does.
func publish(t *testing.T, s *launcher.Stack, b events.RoomEventBatch) {
	t.Helper()
	app := s.App("message")
	if app == nil {
		t.Fatal("no message app")
	}
	c, err := sidecar.Client(strconv.Itoa(app.DaprGRPC), s.Tokens.Dapr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body, _ := json.Marshal(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.PublishEvent(ctx, events.PubSub, events.TopicRoomEvents, body, dapr.PublishEventWithContentType("application/json")); err != nil {
		t.Fatalf("publish: %v", err)
	}
}
