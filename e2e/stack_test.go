package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

var verbose = flag.Bool("stack-log", false, "print every process's log of the stacks under test")

// stacks are started once per profile and shared by the tests of this
// binary; TestMain stops them.
var (
	stacksMu sync.Mutex
	stacks   = map[string]*launcher.Stack{}
	// tails keep the end of each stack's process logs (logTail).
	tails    = map[string]*logTail{}
	stackErr = map[string]error{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, s := range stacks {
		s.Stop()
		_ = os.RemoveAll(s.DataDir)
	}
	os.Exit(code)
}

// stack returns the running stack of profile, starting it on first use.
// A profile whose infrastructure is missing skips the test, unless
// PAPO_REQUIRE_INFRA=1.
func stack(t *testing.T, profile string) *launcher.Stack {
	t.Helper()
	return startStack(t, profile, profile, nil)
}

// startStack returns the running stack named key, of profile, starting it
// on first use with the tests' options, which tweak (when not nil)
// changes — a stack over TLS, say (tls_test.go).
func startStack(t *testing.T, key, profile string, tweak func(*launcher.Options)) *launcher.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts the whole stack")
	}
	stacksMu.Lock()
	defer stacksMu.Unlock()
	tail := tails[key]
	if tail == nil {
		tail = &logTail{}
		tails[key] = tail
	}
	tail.showOnFailure(t)
	if s, ok := stacks[key]; ok {
		return s
	}
	if err, ok := stackErr[key]; ok {
		t.Fatalf("stack %s failed to start earlier: %v", key, err)
	}
	root, err := launcher.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	var log io.Writer = tail
	if *verbose {
		log = io.MultiWriter(os.Stderr, tail)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	opts := launcher.Options{
		Root:        root,
		Profile:     profile,
		DataDir:     tempDir(t, key),
		GatewayAddr: "127.0.0.1:0",
		// A database of its own on the machine's Redis (redis profile), away
		// from a developer's `make run PROFILE=redis` on database 0.
		RedisDB:  1 + os.Getpid()%15,
		Log:      log,
		Progress: testLog{t},
		// The supervisor's alerts outlive this test: the log tail, shown
		// with the test that fails.
		Alerts: log,
		Env: map[string]string{
			"LOG_LEVEL": "warn",
			// The tests send faster than a person; keep the abuse limits
			// out of their way (their own tests set them low on purpose).
			"GATEWAY_RATE_PER_IP":   "100000",
			"GATEWAY_RATE_PER_USER": "100000",
			// Tests act as several clients from one machine: the gateway
			// takes their addresses from X-Forwarded-For, as it would
			// behind a load balancer (edge_test.go).
			"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
			// Stacks of several test runs may share the machine's Redis:
			// keep each one's presence replicas and leases apart.
			"PRESENCE_KEY_PREFIX": randomName("e2e-"),
		},
	}
	if tweak != nil {
		tweak(&opts)
	}
	s, err := launcher.Start(ctx, opts)
	if err != nil {
		if strings.Contains(err.Error(), launcher.ErrInfraMissing.Error()) && os.Getenv("PAPO_REQUIRE_INFRA") != "1" {
			t.Skipf("profile %s: %v (PAPO_REQUIRE_INFRA=1 makes this a failure)", profile, err)
		}
		stackErr[key] = err
		t.Fatalf("start stack %s: %v", key, err)
	}
	stacks[key] = s
	return s
}

// tempDir is a data dir that outlives the test that first asked for the
// stack (t.TempDir would be removed when that test ends).
func tempDir(t *testing.T, profile string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "papo-e2e-"+profile+"-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// user is a registered, logged-in test user.
type user struct {
	*client.Client
	api.User
	Password string
	Refresh  string
}

func randomName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newUser registers and logs in a fresh user on the stack's gateway.
func newUser(t *testing.T, s *launcher.Stack, prefix string) *user {
	t.Helper()
	ctx := context.Background()
	c := client.New(s.GatewayURL)
	name := randomName(prefix)
	pw := "correct horse " + name
	if _, err := c.Register(ctx, name, pw, strings.ToUpper(prefix)); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	tok, err := c.Login(ctx, name, pw)
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return &user{Client: c, User: tok.User, Password: pw, Refresh: tok.RefreshToken}
}

// dialReplica opens a WebSocket straight to one ws replica, bypassing the
// gateway, so a test can place users on replicas on purpose. It presents
// the stack's app API token, as the gateway's proxy does.
func dialReplica(t *testing.T, s *launcher.Stack, replica string, u *user) *client.WS {
	t.Helper()
	app := s.App(replica)
	if app == nil {
		t.Fatalf("no app %s", replica)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, err := client.DialWS(ctx, "ws"+strings.TrimPrefix(app.URL(), "http")+"/ws", u.Token,
		&client.WSOptions{Header: http.Header{"Dapr-Api-Token": {s.Tokens.App}}})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", replica, u.Username, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// dialGateway opens a WebSocket through the gateway's /ws.
func dialGateway(t *testing.T, u *user) *client.WS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, err := u.DialWS(ctx, nil)
	if err != nil {
		t.Fatalf("dial gateway as %s: %v", u.Username, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// dialGatewayWith is dialGateway with options.
func dialGatewayWith(t *testing.T, u *user, opts *client.WSOptions) *client.WS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, err := u.DialWS(ctx, opts)
	if err != nil {
		t.Fatalf("dial gateway as %s: %v", u.Username, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// collector reads a connection's frames and sorts them by kind.
type collector struct {
	ws     *client.WS
	events map[string][]api.Event // by room
	acks   map[string]api.ServerFrame
	other  []api.ServerFrame
}

func newCollector(ws *client.WS) *collector {
	return &collector{ws: ws, events: map[string][]api.Event{}, acks: map[string]api.ServerFrame{}}
}

// until reads frames until done reports true or the deadline passes.
func (c *collector) until(t *testing.T, timeout time.Duration, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		f, err := c.ws.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for %s: %v (have %d rooms of events, %d acks)", what, err, len(c.events), len(c.acks))
		}
		switch f.Type {
		case api.FrameEvent:
			c.events[f.Event.RoomID] = append(c.events[f.Event.RoomID], *f.Event)
		case api.FrameAck:
			c.acks[f.ClientID] = f
		default:
			c.other = append(c.other, f)
		}
	}
}

// messages returns the message events of a room, in arrival order.
func (c *collector) messages(room string) []api.Event {
	var out []api.Event
	for _, e := range c.events[room] {
		if e.Type == api.EventMessage {
			out = append(out, e)
		}
	}
	return out
}

// checkOrdered fails unless events are strictly increasing by one in seq
// (no duplicate, no hole) from their first seq.
func checkOrdered(t *testing.T, who string, evs []api.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			seqs := make([]string, len(evs))
			for j, e := range evs {
				seqs[j] = fmt.Sprint(e.Seq)
			}
			t.Fatalf("%s got seqs %s: not gap-free and ordered", who, strings.Join(seqs, ","))
		}
	}
}
