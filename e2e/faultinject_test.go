package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/launcher"
	"github.com/papochat/papo/platform/wait"
)

// A fault the suite causes, and how.
type fault struct {
	name string
	// do causes the fault and returns a wait for the faulty part to be
	// back (restarted by the launcher, or by the fault itself for the
	// machine's brokers).
	do func(ctx context.Context, s *launcher.Stack) (back func(context.Context) error, err error)
}

// killApp kills an app with SIGKILL; the launcher restarts it.
func killApp(name string) fault {
	return killFault("kill -9 "+name, name, (*launcher.App).KillApp)
}

// killSidecar kills an app's daprd with SIGKILL; the launcher restarts it.
func killSidecar(name string) fault {
	return killFault("kill -9 "+name+"'s daprd", name, (*launcher.App).KillSidecar)
}

func killFault(title, name string, kill func(*launcher.App)) fault {
	return fault{name: title, do: func(_ context.Context, s *launcher.Stack) (func(context.Context) error, error) {
		a := s.App(name)
		if a == nil {
			return nil, fmt.Errorf("no app %s", name)
		}
		before := a.Restarts()
		kill(a)
		// The supervisor counts the restart when it sees the exit, before it
		// starts the new process: until then Ready meets the dead one.
		return func(ctx context.Context) error {
			for {
				err := a.Ready(ctx)
				if err == nil && a.Restarts() > before {
					return nil
				}
				if !wait.For(ctx, 50*time.Millisecond) {
					return fmt.Errorf("%s is not back: %v", name, err)
				}
			}
		}, nil
	}}
}

// up is the back of a fault that waited for its part itself.
func up(context.Context) error { return nil }

// The machine's Redis keeps nothing on disk (--save ""), and other
// engineers' tests use it too: a restart that dropped its data would
// break them. So the restart is SHUTDOWN SAVE (a snapshot, then exit),
// the machine's own start command (which loads the snapshot), and the
// snapshot removed once loaded, so no later start brings it back. Redis
// is away for well under a second.
const redisDir = "/var/lib/redis"

var redisStart = []string{"redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
	"--save", "", "--appendonly", "no", "--dir", redisDir, "--logfile", "/var/log/redis/ci.log"}

// restartRedis restarts the machine's Redis, keeping its data.
var restartRedis = fault{name: "restart Redis", do: func(ctx context.Context, _ *launcher.Stack) (func(context.Context) error, error) {
	return up, restartRedisNow(ctx)
}}

func restartRedisNow(ctx context.Context) error {
	// redis-cli reports the connection the server closed as it exits;
	// whether Redis went down is what counts.
	out, _ := exec.CommandContext(ctx, "redis-cli", "-h", "127.0.0.1", "-p", "6379", "SHUTDOWN", "SAVE").CombinedOutput()
	deadline := time.Now().Add(20 * time.Second)
	for redisUp(ctx) {
		if time.Now().After(deadline) {
			return fmt.Errorf("redis did not shut down: %s", out)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
	var lastErr error
	for time.Now().Before(deadline) {
		if out, err := exec.CommandContext(ctx, redisStart[0], redisStart[1:]...).CombinedOutput(); err != nil {
			lastErr = fmt.Errorf("start redis: %v: %s", err, out)
		}
		for range 50 {
			if redisUp(ctx) {
				// Loaded: the snapshot must not outlive this restart.
				_ = os.Remove(redisDir + "/dump.rdb")
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return fmt.Errorf("redis is not back: %v", lastErr)
}

func redisUp(ctx context.Context) bool {
	out, err := exec.CommandContext(ctx, "redis-cli", "-h", "127.0.0.1", "-p", "6379", "PING").Output()
	return err == nil && strings.TrimSpace(string(out)) == "PONG"
}

// restartRabbitMQ restarts the RabbitMQ application (stop_app, start_app):
// every connection drops and the broker refuses new ones until it is
// back; the Erlang node stays up, so it takes seconds, not the half a
// minute of a node restart, and durable queues keep their messages.
var restartRabbitMQ = fault{name: "restart RabbitMQ", do: func(ctx context.Context, _ *launcher.Stack) (func(context.Context) error, error) {
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", "stop_app").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("rabbitmqctl stop_app: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", "start_app").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("rabbitmqctl start_app: %v: %s (RabbitMQ is DOWN: start it with 'rabbitmqctl start_app')", err, out)
	}
	return up, nil
}}

// faultsFor are the faults of a profile, in the order the suite causes
// them. A killed ws replica's clients reconnect to the other one, so the
// long form alternates the replicas it kills: each kill then meets the
// clients the one before moved.
func faultsFor(profile string, long bool) []fault {
	fs := []fault{killApp("message"), killApp("ws-1"), killSidecar("message"), killApp("notification"), killSidecar("ws-2")}
	if long {
		fs = append(fs, killApp("message"), killApp("ws-2"), killSidecar("message"), killApp("notification"), killSidecar("ws-1"))
	}
	switch profile {
	case "redis":
		fs = append(fs, restartRedis)
	case "rabbitmq-postgres":
		fs = append(fs, restartRabbitMQ)
	}
	return fs
}

// sample is one observation of a prober.
type sample struct {
	at   time.Time
	what string // a route, or "status"
	ok   bool
	note string // the services down, or the status code
}

// probes watch the stack while the suite runs: GET /api/v1/status, and a
// REST route of each service a fault touches, every 100 ms.
type probes struct {
	mu      sync.Mutex
	samples []sample
}

func (p *probes) run(ctx context.Context, s *launcher.Stack, token string) {
	hc := &http.Client{Timeout: 2 * time.Second}
	routes := []string{"/api/v1/rooms", "/api/v1/devices", "/api/v1/me"}
	wait.Every(ctx, 100*time.Millisecond, func() {
		now := time.Now()
		var batch []sample
		if st, err := statusOf(hc, s.GatewayURL); err == nil {
			var down []string
			for svc, state := range st {
				if state != "up" {
					down = append(down, svc)
				}
			}
			batch = append(batch, sample{at: now, what: "status", ok: len(down) == 0, note: strings.Join(down, ",")})
		}
		for _, r := range routes {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayURL+r, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				batch = append(batch, sample{at: now, what: r, note: err.Error()})
				continue
			}
			resp.Body.Close()
			batch = append(batch, sample{at: now, what: r, ok: resp.StatusCode < 500, note: resp.Status})
		}
		p.mu.Lock()
		p.samples = append(p.samples, batch...)
		p.mu.Unlock()
	})
}

func statusOf(hc *http.Client, gatewayURL string) (map[string]string, error) {
	resp, err := hc.Get(gatewayURL + "/api/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st struct {
		Services map[string]string `json:"services"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return st.Services, nil
}

func (p *probes) all() []sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sample(nil), p.samples...)
}
