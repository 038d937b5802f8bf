package launcher

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

// Options configure a stack.
type Options struct {
	// Root is the repository root (holds go.work, services/, components/).
	Root string
	// Profile names the components/<profile>/ folder; default "local".
	Profile string
	// ComponentsDir holds the component files to run on; default
	// <Root>/components/<Profile>. The profile still says what
	// infrastructure the stack needs (Profiles).
	ComponentsDir string
	// DataDir keeps the stack's files (NATS, SQLite, keys, binaries);
	// default <Root>/.data/<Profile>.
	DataDir string
	// BinDir is where the services are built (go build skips what is up
	// to date there: `make run` builds them beside the launcher first);
	// default <DataDir>/bin.
	BinDir string
	// GatewayAddr is the gateway's listen address; default 127.0.0.1:8080.
	// Port 0 picks a free port.
	GatewayAddr string
	// NATSPort is the embedded NATS port (local profile); 0 picks a free one.
	NATSPort int
	// WSReplicas is the number of ws replicas; default 2.
	WSReplicas int
	// Replicas sets the number of replicas of other services (e.g.
	// {"message": 2}); default 1 each. Replicas of one app-id share it and
	// are named <app>-1, <app>-2, …
	Replicas map[string]int
	// Log receives every process's output, prefixed with its name.
	Log io.Writer
	// Progress receives the launcher's own messages.
	Progress io.Writer
	// Env adds environment variables to every service.
	Env map[string]string
	// DaprdLogLevel is daprd's log level; default "warn".
	DaprdLogLevel string
	// ReadyTimeout bounds the wait for every service to be ready; default 90 s.
	ReadyTimeout time.Duration
	// PushURL is where the `push` binding sends; default a sink in the
	// launcher that prints each push.
	PushURL string
	// RedisDB is the Redis database of profiles on Redis (0–15); default 0.
	RedisDB int
	// DaprdProfiling serves Go's pprof from every sidecar on a port of its
	// own (App.DaprdProfilePort), for benchmarks that look for where a
	// sidecar spends its CPU.
	DaprdProfiling bool
	// Pprof serves Go's pprof from every app on its metrics port
	// (App.MetricsPort, /debug/pprof/).
	Pprof bool
	// TraceEndpoint, an OTLP/HTTP base URL (http://host:4318), turns
	// tracing on: every app exports its spans there, and every sidecar
	// its own (sampling everything), so one trace shows both.
	TraceEndpoint string
	// RestartDelay is the supervisor's first wait before it restarts a
	// process that exited unexpectedly; each restart in a row doubles it,
	// up to 10 s. Default 200 ms.
	RestartDelay time.Duration
	// Alerts receives the supervisor's messages (a process exited, was
	// restarted, is ready again); default Progress. They outlive Start.
	Alerts io.Writer
	// TLS serves the public entry over HTTPS and WSS only, with a
	// certificate for GatewayAddr that a local CA made once in
	// <DataDir>/tls signs (Stack.TLS); the gateway's sidecar and the
	// launcher's probes call it on a plain loopback port of its own.
	TLS bool
	// HTTPRedirectAddr, with TLS, is a host:port where plain HTTP is
	// answered only with a redirect to HTTPS.
	HTTPRedirectAddr string
	// GoMaxProcs is the GOMAXPROCS of every sidecar the stack starts and
	// of every service but auth and ws (keepsEveryCore). 0 picks
	// DefaultGoMaxProcs (one for every four cores, at least one), unless
	// the launcher's own environment sets GOMAXPROCS, which then reaches
	// every process unchanged; -1 leaves Go's default (every core) to
	// each process.
	GoMaxProcs int
}

// DefaultGoMaxProcs is the GOMAXPROCS a stack gives its sidecars and most
// of its apps on a machine of cpus cores: one for every four, at least
// one. A stack is a dozen Go processes (six apps, their sidecars, a second
// ws replica); each one left at its default would run a scheduler thread
// per core, and on a small machine those threads wake, spin and preempt
// each other for the same few cores (docs/benchmarks.md, "One scheduler
// thread per process"). On Kubernetes a container's CPU limit sets it
// instead (docs/deploy.md).
func DefaultGoMaxProcs(cpus int) int {
	return max(1, cpus/4)
}

func (o *Options) defaults() error {
	if o.Root == "" {
		root, err := FindRoot(".")
		if err != nil {
			return err
		}
		o.Root = root
	}
	if o.Profile == "" {
		o.Profile = "local"
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(o.Root, ".data", o.Profile)
	}
	if o.GatewayAddr == "" {
		o.GatewayAddr = "127.0.0.1:8080"
	}
	if o.WSReplicas <= 0 {
		o.WSReplicas = 2
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 90 * time.Second
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = 200 * time.Millisecond
	}
	if o.Alerts == nil {
		o.Alerts = o.Progress
	}
	if o.GoMaxProcs == 0 {
		o.GoMaxProcs = DefaultGoMaxProcs(runtime.NumCPU())
		if os.Getenv("GOMAXPROCS") != "" {
			o.GoMaxProcs = -1
		}
	}
	return nil
}

// FindRoot walks up from dir to the folder holding go.work.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work found above the current directory: run from the papo repository")
		}
		dir = parent
	}
}

// goMaxProcsEnv is the environment entry that gives a process the stack's
// GOMAXPROCS, if it sets one.
func (o *Options) goMaxProcsEnv() []string {
	if o.GoMaxProcs <= 0 {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(o.GoMaxProcs)}
}
