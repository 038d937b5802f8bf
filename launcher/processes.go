package launcher

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/procs"
)

// App is one running service replica with its sidecar.
type App struct {
	Name  string // e.g. "ws-2"
	AppID string // e.g. "ws"
	// Port is the app's plain-HTTP port on loopback, which its sidecar
	// and the launcher's probes call.
	Port int
	// PublicPort is the gateway's public port (its APP_PORT): Port
	// itself, but with Options.TLS a port of its own that speaks only
	// TLS. 0 for the other apps.
	PublicPort int
	DaprHTTP   int
	DaprGRPC   int
	// DaprdProfilePort serves the sidecar's pprof (Options.DaprdProfiling),
	// else 0.
	DaprdProfilePort int
	// MetricsPort serves the app's /metrics on 127.0.0.1 (METRICS_ADDR),
	// and /debug/pprof/ with Options.Pprof.
	MetricsPort int

	spec    procs.Spec
	sidecar daprd.Sidecar
	stack   *Stack
	// invokes says whether the sidecar's API serves service invocation
	// (auth's does not: it calls no other app).
	invokes bool

	mu  sync.Mutex
	app *procs.Proc
	dpr *procs.Proc
	// gen counts the deliberate replacements of the processes (Restart,
	// Stop); the supervisor leaves alone an exit of an earlier generation.
	// changed is closed and replaced at each one. stopped: Stop was
	// called and no Restart since.
	gen     int
	changed chan struct{}
	stopped bool

	// daprdPath is the daprd binary the sidecar runs.
	daprdPath string

	// ops serializes what starts or stops the processes: the
	// supervisor's restarts, Restart and Stop.
	ops sync.Mutex
	// restarts counts the supervisor's restarts.
	restarts atomic.Int64
}

// URL is the app's own base URL (not through the gateway).
func (a *App) URL() string { return "http://127.0.0.1:" + strconv.Itoa(a.Port) }

// MetricsURL is the app's /metrics.
func (a *App) MetricsURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(a.MetricsPort) + "/metrics"
}

// DaprdMetricsURL is the sidecar's Prometheus metrics, or "" when the
// sidecar serves none (a daprd other than papo's build; see
// daprd.LoopbackMetrics).
func (a *App) DaprdMetricsURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.sidecar.Metrics {
		return ""
	}
	return "http://127.0.0.1:" + strconv.Itoa(a.sidecar.MetricsPort) + "/"
}

// start starts the app, then its sidecar (daprd waits for the app's
// port); a.ops is held or nothing else runs yet.
func (a *App) start() error {
	app, err := a.startApp()
	if err != nil {
		return err
	}
	dpr, err := a.startSidecar()
	if err != nil {
		app.Stop(time.Second)
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.app, a.dpr = app, dpr
	return nil
}

func (a *App) startApp() (*procs.Proc, error) {
	a.mu.Lock()
	spec := a.spec
	a.mu.Unlock()
	return procs.Start(spec, a.stack.opts.Log, a.stack.width)
}

func (a *App) startSidecar() (*procs.Proc, error) {
	a.mu.Lock()
	sc, path := a.sidecar, a.daprdPath
	a.mu.Unlock()
	return procs.Start(procs.Spec{
		Name: a.Name + ".dapr",
		Path: path,
		Args: sc.Args(),
		Dir:  a.stack.DataDir,
		Env:  append(sc.Env(), a.stack.opts.goMaxProcsEnv()...),
	}, a.stack.opts.Log, a.stack.width)
}

// deliberate records that the processes are replaced or stopped on
// purpose, so the supervisor does not take it for a crash; a.ops is held.
func (a *App) deliberate(stopped bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	a.stopped = stopped
	if a.changed != nil {
		close(a.changed)
	}
	a.changed = make(chan struct{})
}

// Restart stops the app and its sidecar (gracefully, if they run) and
// starts them again on the same ports, then waits until the app is ready
// and service invocation to and from it works again. daprdPath is the
// daprd to run from now on.
func (a *App) Restart(ctx context.Context, daprdPath string) error {
	a.mu.Lock()
	a.daprdPath = daprdPath
	a.mu.Unlock()
	if err := a.replace(); err != nil {
		return err
	}
	if err := a.waitReady(ctx); err != nil {
		return err
	}
	return a.stack.waitInvocationAround(ctx, a)
}

// replace stops the app and its sidecar, if they run, and starts them
// again, on purpose.
func (a *App) replace() error {
	a.ops.Lock()
	defer a.ops.Unlock()
	a.deliberate(false)
	a.stopProcs()
	return a.start()
}

// Kill kills the app and its sidecar with SIGKILL, as a crash of the whole
// machine would, and keeps them down — the supervisor leaves them alone —
// until Restart: an outage that lasts, for tests of what the rest of the
// stack does meanwhile. KillApp and KillSidecar are crashes the supervisor
// repairs.
func (a *App) Kill() {
	a.ops.Lock()
	defer a.ops.Unlock()
	a.deliberate(true)
	a.kill(a.proc(false))
	a.kill(a.proc(true))
}

// KillApp kills the app process alone with SIGKILL and waits until it is
// gone; the supervisor restarts it.
func (a *App) KillApp() { a.kill(a.proc(false)) }

// KillSidecar kills the app's daprd alone with SIGKILL and waits until it
// is gone; the supervisor restarts it.
func (a *App) KillSidecar() { a.kill(a.proc(true)) }

func (a *App) kill(p *procs.Proc) {
	if p != nil {
		_ = p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
}

func (a *App) proc(sidecar bool) *procs.Proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sidecar {
		return a.dpr
	}
	return a.app
}

// Stop stops the app gracefully (SIGTERM, up to 12 s for ws to drain), then
// its sidecar. The supervisor does not restart them.
func (a *App) Stop() {
	a.ops.Lock()
	defer a.ops.Unlock()
	a.deliberate(true)
	a.stopProcs()
}

// stopProcs stops the app, then its sidecar; a.ops is held.
func (a *App) stopProcs() {
	if p := a.proc(false); p != nil {
		p.Stop(12 * time.Second)
	}
	if p := a.proc(true); p != nil {
		p.Stop(8 * time.Second)
	}
}

// Signal sends sig to the app process only (not its sidecar).
func (a *App) Signal(sig syscall.Signal) error {
	p := a.proc(false)
	if p == nil {
		return nil
	}
	return p.Signal(sig)
}

// Pid is the app process's id (not its sidecar's), or 0 before it starts;
// benchmarks read its memory from /proc/<pid>/status.
func (a *App) Pid() int {
	if p := a.proc(false); p != nil {
		return p.Pid()
	}
	return 0
}

// SidecarPid is the app's daprd's process id, or 0 before it starts.
func (a *App) SidecarPid() int {
	if p := a.proc(true); p != nil {
		return p.Pid()
	}
	return 0
}

// Restarts is how many times the supervisor restarted the app or its
// sidecar.
func (a *App) Restarts() int { return int(a.restarts.Load()) }

// Exited is closed when the current app process exits.
func (a *App) Exited() <-chan struct{} { return a.proc(false).Done() }

// Ready waits until the app answers /readyz, or ctx ends.
func (a *App) Ready(ctx context.Context) error { return a.waitReady(ctx) }

// bindFailed reports whether the app or its sidecar exited because a port
// was taken.
func (a *App) bindFailed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range []*procs.Proc{a.app, a.dpr} {
		if p == nil || !p.Exited() {
			continue
		}
		for _, line := range p.Tail() {
			if strings.Contains(line, "address already in use") {
				return true
			}
		}
	}
	return false
}

// newSidecarPorts gives the app's sidecar fresh ports and tells the app.
func (a *App) newSidecarPorts() error {
	ports, err := FreePorts(5)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.DaprHTTP, a.DaprGRPC = ports[0], ports[1]
	a.sidecar.HTTPPort, a.sidecar.GRPCPort = ports[0], ports[1]
	a.sidecar.InternalPort, a.sidecar.MetricsPort, a.sidecar.PublicPort = ports[2], ports[3], ports[4]
	env := a.spec.Env[:0:0]
	for _, kv := range a.spec.Env {
		switch {
		case strings.HasPrefix(kv, "DAPR_HTTP_PORT="):
			kv = "DAPR_HTTP_PORT=" + strconv.Itoa(ports[0])
		case strings.HasPrefix(kv, "DAPR_GRPC_PORT="):
			kv = "DAPR_GRPC_PORT=" + strconv.Itoa(ports[1])
		}
		env = append(env, kv)
	}
	a.spec.Env = env
	return nil
}
