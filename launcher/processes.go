package launcher

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/procs"
)

// App is one running service replica with its sidecar.
type App struct {
	Name     string // e.g. "ws-2"
	AppID    string // e.g. "ws"
	Port     int
	DaprHTTP int
	DaprGRPC int
	// DaprdProfilePort serves the sidecar's pprof (Options.DaprdProfiling),
	// else 0.
	DaprdProfilePort int

	spec    procs.Spec
	sidecar daprd.Sidecar
	stack   *Stack
	// invokes says whether the sidecar's API serves service invocation
	// (auth's does not: it calls no other app).
	invokes bool

	mu  sync.Mutex
	app *procs.Proc
	dpr *procs.Proc
}

// URL is the app's own base URL (not through the gateway).
func (a *App) URL() string { return "http://127.0.0.1:" + strconv.Itoa(a.Port) }

// start starts the app, then its sidecar (daprd waits for the app's port).
func (a *App) start(daprdPath string, width int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	app, err := procs.Start(a.spec, a.stack.opts.Log, width)
	if err != nil {
		return err
	}
	dpr, err := procs.Start(procs.Spec{
		Name: a.Name + ".dapr",
		Path: daprdPath,
		Args: a.sidecar.Args(),
		Dir:  a.stack.DataDir,
		Env:  a.sidecar.Env(),
	}, a.stack.opts.Log, width)
	if err != nil {
		app.Stop(time.Second)
		return err
	}
	a.app, a.dpr = app, dpr
	return nil
}

// Restart starts a stopped or killed app and its sidecar again on the same
// ports and waits until it is ready.
func (a *App) Restart(ctx context.Context, daprdPath string) error {
	a.Stop()
	if err := a.start(daprdPath, len(a.Name)+5); err != nil {
		return err
	}
	return a.waitReady(ctx)
}

// Kill kills the app and its sidecar with SIGKILL, as a crash would.
func (a *App) Kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range []*procs.Proc{a.app, a.dpr} {
		if p != nil {
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
	}
}

// Stop stops the app gracefully (SIGTERM, up to 12 s for ws to drain), then
// its sidecar.
func (a *App) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.app != nil {
		a.app.Stop(12 * time.Second)
	}
	if a.dpr != nil {
		a.dpr.Stop(8 * time.Second)
	}
}

// Signal sends sig to the app process only (not its sidecar).
func (a *App) Signal(sig syscall.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.app == nil {
		return nil
	}
	return a.app.Signal(sig)
}

// Pid is the app process's id (not its sidecar's), or 0 before it starts;
// benchmarks read its memory from /proc/<pid>/status.
func (a *App) Pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.app == nil {
		return 0
	}
	return a.app.Pid()
}

// Exited is closed when the app process exits.
func (a *App) Exited() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.app.Done()
}

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
