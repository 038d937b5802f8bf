package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/launcher"
)

// ownStacks are stacks a test starts for itself (other options than the
// shared ones); TestMain stops them with the shared stacks.
var (
	ownMu    sync.Mutex
	ownTails = map[string]*logTail{}
)

// ownStack starts a stack of profile named key once, with the shared
// stacks' environment changed by mutate, and returns it with its log.
func ownStack(t *testing.T, key, profile string, mutate func(*launcher.Options)) (*launcher.Stack, *logTail) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts the whole stack")
	}
	ownMu.Lock()
	defer ownMu.Unlock()
	tail := ownTails[key]
	if tail == nil {
		tail = &logTail{}
		ownTails[key] = tail
	}
	tail.showOnFailure(t)
	stacksMu.Lock()
	s, ok := stacks[key]
	err, failed := stackErr[key]
	stacksMu.Unlock()
	if ok {
		return s, tail
	}
	if failed {
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
	opts := launcher.Options{
		Root:        root,
		Profile:     profile,
		DataDir:     tempDir(t, key),
		GatewayAddr: "127.0.0.1:0",
		RedisDB:     1 + (os.Getpid()+7)%15,
		Log:         log,
		Progress:    testLog{t},
		Alerts:      log,
		Env: map[string]string{
			"LOG_LEVEL":               "warn",
			"GATEWAY_RATE_PER_IP":     "100000",
			"GATEWAY_RATE_PER_USER":   "100000",
			"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
			"PRESENCE_KEY_PREFIX":     randomName("e2e-"),
		},
	}
	if mutate != nil {
		mutate(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, err = launcher.Start(ctx, opts)
	stacksMu.Lock()
	defer stacksMu.Unlock()
	if err != nil {
		stackErr[key] = err
		t.Fatalf("start stack %s: %v", key, err)
	}
	stacks[key] = s
	return s, tail
}

// serviceStatus reads GET /api/v1/status.
func serviceStatus(t *testing.T, s *launcher.Stack) (api.ServiceStatus, error) {
	t.Helper()
	resp, err := http.Get(s.GatewayURL + "/api/v1/status")
	if err != nil {
		return api.ServiceStatus{}, err
	}
	defer resp.Body.Close()
	var st api.ServiceStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode status (%d): %w", resp.StatusCode, err)
	}
	return st, nil
}

// serviceIs reports whether the gateway's status shows service in state.
func serviceIs(t *testing.T, s *launcher.Stack, service, state string) bool {
	st, err := serviceStatus(t, s)
	return err == nil && st.Services[service] == state
}

// readyz returns the status and body of GET url/readyz.
func readyz(url string) (int, string) {
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTheLauncherRestartsWhatDies: kill -9 of an app or of its sidecar is
// announced, restarted (the other process of the pair keeps running), and
// readiness says so meanwhile — the app's own /readyz, the gateway's
// /readyz and GET /api/v1/status — then everything works again. The stack
// waits 3 s before each restart, so the outage is long enough to watch
// (6 s for the second of an app's crashes within 30 s: the backoff).
func TestTheLauncherRestartsWhatDies(t *testing.T) {
	s, tail := ownStack(t, "supervision", "local", func(o *launcher.Options) {
		o.RestartDelay = 3 * time.Second
		o.Env["GATEWAY_STATUS_INTERVAL"] = "200ms"
	})
	ctx := context.Background()
	u := newUser(t, s, "sup")
	room, err := u.CreateRoom(ctx, randomName("sup-"), "public")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		app     string
		service string
		sidecar bool
	}{
		{"the message service", "message", "message", false},
		{"the message service's sidecar", "message", "message", true},
		{"the notification service", "notification", "notification", false},
		{"a ws replica's sidecar", "ws-1", "ws", true},
		{"the auth service's sidecar", "auth", "auth", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := s.App(c.app)
			appPid, dprPid, restarts := a.Pid(), a.SidecarPid(), a.Restarts()
			if c.sidecar {
				a.KillSidecar()
			} else {
				a.KillApp()
			}
			killed := time.Now()
			within(t, 3*time.Second, c.app+"'s /readyz to fail", func() bool {
				st, _ := readyz(a.URL())
				return st != http.StatusOK
			})
			within(t, 3*time.Second, "the status to show "+c.service+" down", func() bool {
				return serviceIs(t, s, c.service, "down")
			})
			if c.service != "ws" {
				st, body := readyz(s.GatewayURL)
				if st != http.StatusServiceUnavailable || !strings.Contains(body, `"`+c.service+`":"unavailable"`) {
					t.Errorf("the gateway's /readyz: %d %s, want 503 naming %s", st, body, c.service)
				}
			}
			within(t, 60*time.Second, c.app+" to be ready again", func() bool {
				st, _ := readyz(a.URL())
				return st == http.StatusOK && serviceIs(t, s, c.service, "up")
			})
			t.Logf("%s back %s after the kill", c.app, time.Since(killed).Round(100*time.Millisecond))
			if a.Restarts() != restarts+1 {
				t.Errorf("restarts %d, want %d", a.Restarts(), restarts+1)
			}
			killedPid, keptPid, keptNow := appPid, dprPid, a.SidecarPid()
			if c.sidecar {
				killedPid, keptPid, keptNow = dprPid, appPid, a.Pid()
			}
			if keptNow != keptPid {
				t.Errorf("the process that was not killed was restarted too (%d, now %d)", keptPid, keptNow)
			}
			if now := a.SidecarPid(); c.sidecar && now == killedPid || !c.sidecar && a.Pid() == killedPid {
				t.Errorf("the killed process %d was not replaced", killedPid)
			}
			within(t, 5*time.Second, "the alerts for "+c.app+" in the log", func() bool {
				log := tail.String()
				return strings.Contains(log, "exited unexpectedly") && strings.Contains(log, c.app+" is ready again")
			})
			// The service works again: a message through it all.
			cid := randomName("after-")
			if err := u.Send(ctx, room.ID, cid, "after "+c.name); err != nil {
				t.Fatalf("send after the restart: %v", err)
			}
			within(t, 20*time.Second, "the message in history", func() bool {
				evs, err := u.EventsAfter(ctx, room.ID, 0, 200)
				if err != nil {
					return false
				}
				for _, e := range evs.Events {
					if e.ClientID == cid {
						return true
					}
				}
				return false
			})
		})
	}
	t.Run("the gateway", func(t *testing.T) {
		gw := s.App("gateway")
		pid := gw.Pid()
		gw.KillApp()
		within(t, 3*time.Second, "the gateway to be gone", func() bool {
			st, _ := readyz(s.GatewayURL)
			return st == 0
		})
		within(t, 60*time.Second, "the gateway back, every service up", func() bool {
			st, err := serviceStatus(t, s)
			return err == nil && st.Status == "ok"
		})
		if gw.Pid() == pid {
			t.Error("the gateway was not replaced")
		}
		if _, err := u.Rooms(ctx); err != nil {
			t.Fatalf("a REST call through the restarted gateway: %v", err)
		}
	})
	within(t, 10*time.Second, "every service up", func() bool {
		st, err := serviceStatus(t, s)
		return err == nil && st.Status == "ok"
	})
}

// TestAnUnavailableServiceIsA503WithRetryAfter: while a service is down,
// its routes answer papo's 503 unavailable with Retry-After, naming the
// service and no internal address.
func TestAnUnavailableServiceIsA503WithRetryAfter(t *testing.T) {
	s, _ := ownStack(t, "supervision", "local", func(o *launcher.Options) {
		o.RestartDelay = 3 * time.Second
		o.Env["GATEWAY_STATUS_INTERVAL"] = "200ms"
	})
	u := newUser(t, s, "down")
	a := s.App("message")
	a.KillApp()
	req, _ := http.NewRequest(http.MethodGet, s.GatewayURL+"/api/v1/rooms", nil)
	req.Header.Set("Authorization", "Bearer "+u.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || errCode(string(b)) != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %d %s (Retry-After %q), want 503 unavailable with Retry-After", resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	for _, leak := range []string{"127.0.0.1", "dial tcp", "ERR_", "errorCode"} {
		if strings.Contains(string(b), leak) {
			t.Errorf("the answer names %q: %s", leak, b)
		}
	}
	within(t, 60*time.Second, "message ready again", func() bool { return serviceIs(t, s, "message", "up") })
}

// TestEveryProcessRunsOnTheStacksGOMAXPROCS: the launcher gives every
// sidecar, and every app but auth and ws, one scheduler thread per four
// cores (at least one) instead of Go's one per core, so that a dozen
// processes on a small machine do not wake and spin a thread per core
// each; auth and ws keep Go's default, and a GOMAXPROCS in the launcher's
// environment reaches every process unchanged.
func TestEveryProcessRunsOnTheStacksGOMAXPROCS(t *testing.T) {
	s := stack(t, "local")
	want := fmt.Sprint(launcher.DefaultGoMaxProcs(runtime.NumCPU()))
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		want = v
	}
	for _, svc := range launcher.Services {
		for _, a := range s.Apps(svc) {
			for name, pid := range map[string]int{a.Name: a.Pid(), a.Name + ".dapr": a.SidecarPid()} {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got := ""
				for _, kv := range strings.Split(string(b), "\x00") {
					if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
						got = v
					}
				}
				want := want
				if (svc == "auth" || svc == "ws") && !strings.HasSuffix(name, ".dapr") && os.Getenv("GOMAXPROCS") == "" {
					want = "" // password hashing and socket writes keep every core
				}
				if got != want {
					t.Errorf("%s (pid %d) runs with GOMAXPROCS=%q, want %q", name, pid, got, want)
				}
			}
		}
	}
}
