// Package launcher starts a whole papo stack on one machine: the profile's
// infrastructure (an embedded NATS JetStream for the local profile, a Kafka
// stand-in for kafka-postgres), every
// service with its own daprd sidecar, two ws replicas, and waits until each
// is ready. `make run` (cmd/papo) and the end-to-end tests use it alike.
package launcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/kafkafake"
	"github.com/papochat/papo/launcher/natsjs"
	"github.com/papochat/papo/launcher/procs"
	"github.com/papochat/papo/platform/events"
)

// Services are the six papo services, in start order.
var Services = []string{"auth", "message", "presence", "notification", "ws", "gateway"}

// Options configure a stack.
type Options struct {
	// Root is the repository root (holds go.work, services/, components/).
	Root string
	// Profile names the components/<profile>/ folder; default "local".
	Profile string
	// DataDir keeps the stack's files (NATS, SQLite, keys, binaries);
	// default <Root>/.data/<Profile>.
	DataDir string
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
}

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

// Tokens are a stack's two API tokens (docs/ops.md, security model).
type Tokens struct {
	// App is APP_API_TOKEN: each sidecar sends it to its app, and every
	// app refuses other callers (the gateway sends it to the ws replicas).
	App string
	// Dapr is DAPR_API_TOKEN: each sidecar refuses API calls without it.
	Dapr string
}

// Stack is a running papo system.
type Stack struct {
	// GatewayURL is the public entry, e.g. http://127.0.0.1:8080.
	GatewayURL string
	Profile    Profile
	DataDir    string
	// Tokens are made at random for each start and kept, readable by the
	// owner only, in <DataDir>/api-tokens.env.
	Tokens Tokens

	opts Options
	// tracing is the generated tracing Configuration, or "" when no trace
	// endpoint is set.
	tracing string
	nats    *natsjs.Server
	kafka   *kafkafake.Server
	sink    *pushSink
	apps    []*App
	lock    *os.File

	// handoffDir holds the ws replicas' hand-off sockets; removed at Stop
	// when it is a temporary folder (handoffTemp).
	handoffDir  string
	handoffTemp bool
}

// Apps returns the replicas of appID, or every app when appID is "".
func (s *Stack) Apps(appID string) []*App {
	var out []*App
	for _, a := range s.apps {
		if appID == "" || a.AppID == appID {
			out = append(out, a)
		}
	}
	return out
}

// App returns the app named name ("ws-1", "message", …) or nil.
func (s *Stack) App(name string) *App {
	for _, a := range s.apps {
		if a.Name == name {
			return a
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
	return nil
}

// Start brings a stack up and returns when every service answers /readyz.
// On error everything started so far is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	profile, ok := Profiles[opts.Profile]
	if !ok {
		profile = Profile{Name: opts.Profile}
	}
	componentsSrc := filepath.Join(opts.Root, "components", opts.Profile)
	if _, err := os.Stat(componentsSrc); err != nil {
		return nil, fmt.Errorf("profile %q: %w", opts.Profile, err)
	}
	if err := profile.CheckNeeds(ctx); err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{Profile: profile, DataDir: dataDir, opts: opts}
	if err := s.takeLock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	daprdPath, err := daprd.Locate(ctx, opts.Root, opts.Progress)
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(dataDir, "bin")
	if err := buildServices(ctx, opts.Root, binDir, opts.Progress); err != nil {
		return nil, err
	}

	vars := map[string]string{
		"PAPO_DATA_DIR":     dataDir,
		"PAPO_SECRETS_FILE": filepath.Join(dataDir, "secrets.json"),
	}
	if profile.EmbeddedNATS {
		port := opts.NATSPort
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.nats, err = natsjs.Start(port, filepath.Join(dataDir, "nats"))
		if err != nil {
			return nil, err
		}
		vars["PAPO_NATS_URL"] = s.nats.URL()
		fmt.Fprintf(opts.Progress, "papo: embedded NATS JetStream on %s\n", s.nats.URL())
	} else if profile.NATSURL != "" {
		vars["PAPO_NATS_URL"] = profile.NATSURL
	}
	if url := vars["PAPO_NATS_URL"]; url != "" {
		if err := natsjs.EnsureStreams(ctx, url, events.AllTopics, 24*time.Hour); err != nil {
			return nil, err
		}
	}
	if profile.EmbeddedKafka {
		if err := s.startKafka(ctx, binDir); err != nil {
			return nil, err
		}
		vars["PAPO_KAFKA_BROKERS"] = s.kafka.Addr()
		fmt.Fprintf(opts.Progress, "papo: embedded Kafka (kfake) on %s, data in %s\n", s.kafka.Addr(), filepath.Join(dataDir, "kafka"))
	}
	if opts.RedisDB < 0 || opts.RedisDB > 15 {
		return nil, fmt.Errorf("redis database %d is not 0-15", opts.RedisDB)
	}
	vars["PAPO_REDIS_DB"] = strconv.Itoa(opts.RedisDB)
	vars["PAPO_PUSH_URL"] = opts.PushURL
	if opts.PushURL == "" {
		if s.sink, err = startPushSink(opts.Log); err != nil {
			return nil, err
		}
		vars["PAPO_PUSH_URL"] = s.sink.url
	}
	if err := ensureFile(vars["PAPO_SECRETS_FILE"], "{}\n"); err != nil {
		return nil, err
	}
	resources := filepath.Join(dataDir, "components")
	_ = os.RemoveAll(resources)
	if err := renderComponents(componentsSrc, resources, vars); err != nil {
		return nil, err
	}
	if err := s.writeNameResolution(); err != nil {
		return nil, err
	}
	if opts.TraceEndpoint != "" {
		if s.tracing, err = s.tracingConfig(opts.TraceEndpoint); err != nil {
			return nil, err
		}
	}

	if s.Tokens, err = newTokens(filepath.Join(dataDir, "api-tokens.env")); err != nil {
		return nil, err
	}
	if err := s.makeHandoffDir(); err != nil {
		return nil, err
	}
	if err := s.plan(binDir, resources, vars); err != nil {
		return nil, err
	}
	sidecarMetrics := daprd.LoopbackMetrics(ctx, daprdPath)
	for _, a := range s.apps {
		a.sidecar.Metrics = sidecarMetrics
	}
	if err := s.writePrometheusConfig(); err != nil {
		return nil, err
	}
	for _, a := range s.apps {
		a.sidecar.ResourcesDir = resources
	}
	width := 0
	for _, a := range s.apps {
		width = max(width, len(a.Name)+5)
	}
	for _, a := range s.apps {
		if err := a.start(daprdPath, width); err != nil {
			return nil, err
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := s.waitReady(readyCtx, daprdPath, width); err != nil {
		return nil, err
	}
	if err := s.waitInvocation(readyCtx); err != nil {
		return nil, err
	}
	return s, nil
}

// waitInvocation waits until every sidecar that serves service invocation
// can invoke every app-id. A
// sidecar reports ready before its name resolver has initialized, and an
// app's registration may land a moment after its own readiness, so a
// stack is ready only when service invocation works from everywhere.
func (s *Stack) waitInvocation(ctx context.Context) error {
	ids := map[string]bool{}
	for _, a := range s.apps {
		ids[a.AppID] = true
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, from := range s.apps {
		if !from.invokes {
			continue
		}
		for id := range ids {
			url := fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/%s/method/healthz", from.DaprHTTP, id)
			var last string
			for {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header.Set("dapr-api-token", s.Tokens.Dapr)
				resp, err := hc.Do(req)
				if err == nil {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
					last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(b)))
				} else {
					last = err.Error()
				}
				// Service invocation has no circuit breaker (the profiles'
				// resiliency.yaml says why), so quick probes of an app-id
				// that does not resolve yet cost nothing but the calls.
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s's sidecar cannot invoke %s: %w (last: %s)", from.Name, id, ctx.Err(), last)
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// takeLock makes sure one launcher at a time uses a data dir.
func (s *Stack) takeLock() error {
	f, err := os.OpenFile(filepath.Join(s.DataDir, "launcher.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("another papo stack is running with data dir %s (stop it first, or set another data dir)", s.DataDir)
	}
	s.lock = f
	return nil
}

// daprConfigs returns the Configuration files of appID's sidecar: the
// project's dapr/<app-id>.yaml (tracing, metrics, the app's API
// allow-list), then a generated one that points name resolution at this
// stack's own SQLite table, so app-ids of two stacks on one machine never
// resolve to each other (mDNS would mix them), and, with a trace
// endpoint, the generated tracing.yaml.
func (s *Stack) daprConfigs(appID string) ([]string, error) {
	own := filepath.Join(s.opts.Root, "dapr", appID+".yaml")
	if _, err := os.Stat(own); err != nil {
		return nil, fmt.Errorf("the Dapr Configuration of %s: %w", appID, err)
	}
	configs := []string{own, filepath.Join(s.DataDir, "nameresolution.yaml")}
	if s.tracing != "" {
		configs = append(configs, s.tracing)
	}
	return configs, nil
}

// writeNameResolution writes the stack's name resolution Configuration.
func (s *Stack) writeNameResolution() error {
	content := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: papo-launcher
spec:
  nameResolution:
    component: sqlite
    version: v1
    configuration:
      connectionString: %q
      # A sidecar renews its row every updateInterval - timeout - 1 s and
      # is dropped once it is updateInterval old: 11 s of slack keeps a
      # busy machine from losing a live app (the default leaves 2 s).
      updateInterval: 15s
      timeout: 10s
`, filepath.Join(s.DataDir, "nameresolution.db"))
	return os.WriteFile(filepath.Join(s.DataDir, "nameresolution.yaml"), []byte(content), 0o644)
}

// plan assigns every port of every app and sidecar.
func (s *Stack) plan(binDir, resources string, vars map[string]string) error {
	type appName struct{ name, appID string }
	var names []appName
	for _, svc := range Services {
		n := s.opts.Replicas[svc]
		if svc == "ws" {
			n = s.opts.WSReplicas
		}
		if n <= 1 && svc != "ws" {
			names = append(names, appName{svc, svc})
			continue
		}
		for i := 1; i <= n; i++ {
			names = append(names, appName{fmt.Sprintf("%s-%d", svc, i), svc})
		}
	}
	gwHost, gwPort, err := net.SplitHostPort(s.opts.GatewayAddr)
	if err != nil {
		return fmt.Errorf("gateway address %q: %w", s.opts.GatewayAddr, err)
	}
	per := 7
	if s.opts.DaprdProfiling {
		per = 8
	}
	all, err := FreePorts(per * len(names))
	if err != nil {
		return err
	}
	var wsURLs, wsSockets []string
	for i, n := range names {
		ports := all[per*i : per*i+per]
		a := &App{Name: n.name, AppID: n.appID, Port: ports[0], DaprHTTP: ports[1], DaprGRPC: ports[2], MetricsPort: ports[6], stack: s}
		configs, err := s.daprConfigs(n.appID)
		if err != nil {
			return err
		}
		if a.invokes, err = daprd.ServesHTTP(configs[0], "invoke"); err != nil {
			return err
		}
		if n.appID == "gateway" && gwPort != "0" {
			p, err := strconv.Atoi(gwPort)
			if err != nil {
				return fmt.Errorf("gateway port %q: %w", gwPort, err)
			}
			ln, err := net.Listen("tcp", s.opts.GatewayAddr)
			if err != nil {
				return fmt.Errorf("the gateway's address %s is taken (another papo, or set PAPO_ADDR): %w", s.opts.GatewayAddr, err)
			}
			ln.Close()
			a.Port = p
		}
		a.sidecar = daprd.Sidecar{
			AppID:        n.appID,
			AppPort:      strconv.Itoa(a.Port),
			HTTPPort:     ports[1],
			GRPCPort:     ports[2],
			InternalPort: ports[3],
			MetricsPort:  ports[4],
			PublicPort:   ports[5],
			ResourcesDir: resources,
			Configs:      configs,
			LogLevel:     s.opts.DaprdLogLevel,
			APIToken:     s.Tokens.Dapr,
			AppToken:     s.Tokens.App,
		}
		if s.opts.DaprdProfiling {
			a.DaprdProfilePort = ports[7]
			a.sidecar.ProfilePort = ports[7]
		}
		if n.appID == "ws" {
			wsURLs = append(wsURLs, a.URL())
			wsSockets = append(wsSockets, s.handoffSocket(a.Name))
		}
		s.apps = append(s.apps, a)
	}
	for _, a := range s.apps {
		host := "127.0.0.1"
		if a.AppID == "gateway" && gwHost != "" {
			host = gwHost
		}
		env := []string{
			"APP_HOST=" + host,
			"APP_PORT=" + strconv.Itoa(a.Port),
			"DAPR_HTTP_PORT=" + strconv.Itoa(a.DaprHTTP),
			"DAPR_GRPC_PORT=" + strconv.Itoa(a.DaprGRPC),
			"APP_ID=" + a.AppID,
			"APP_REPLICA=" + a.Name,
			"APP_API_TOKEN=" + s.Tokens.App,
			"DAPR_API_TOKEN=" + s.Tokens.Dapr,
			// Metrics on loopback, never on the app's (or gateway's) port.
			"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(a.MetricsPort),
			"METRICS_PPROF=" + strconv.FormatBool(s.opts.Pprof),
			"OTEL_SERVICE_NAME=" + a.AppID,
			"OTEL_RESOURCE_ATTRIBUTES=service.instance.id=" + a.Name,
		}
		if s.opts.TraceEndpoint != "" {
			env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+s.opts.TraceEndpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
		}
		switch a.AppID {
		case "gateway":
			env = append(env, "GATEWAY_WS_UPSTREAMS="+strings.Join(wsURLs, ","), "GATEWAY_WS_HANDOFF="+strings.Join(wsSockets, ","))
		case "auth":
			env = append(env, "AUTH_DEV_GENERATE_KEYS=true", "AUTH_DEV_KEY_FILE="+vars["PAPO_SECRETS_FILE"])
		case "ws":
			gw := "127.0.0.1:" + strconv.Itoa(s.gatewayPort())
			env = append(env, "WS_ALLOWED_ORIGINS=http://"+gw+",http://localhost:"+strconv.Itoa(s.gatewayPort()),
				"WS_HANDOFF_SOCKET="+s.handoffSocket(a.Name))
		}
		for k, v := range s.opts.Env {
			env = append(env, k+"="+v)
		}
		a.spec = procs.Spec{Name: a.Name, Path: filepath.Join(binDir, a.AppID), Dir: s.DataDir, Env: env}
	}
	if gw := s.App("gateway"); gw != nil {
		host := gwHost
		if host == "" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		s.GatewayURL = "http://" + net.JoinHostPort(host, strconv.Itoa(gw.Port))
	}
	return nil
}

// makeHandoffDir makes the private folder (0700) where the gateway hands
// clients' sockets to the ws replicas: <DataDir>/handoff, or a temporary
// folder when that path is too long for a Unix socket.
func (s *Stack) makeHandoffDir() error {
	dir := filepath.Join(s.DataDir, "handoff")
	if len(dir) > 80 {
		tmp, err := os.MkdirTemp("", "papo-handoff-")
		if err != nil {
			return err
		}
		s.handoffDir, s.handoffTemp = tmp, true
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	s.handoffDir = dir
	return os.Chmod(dir, 0o700)
}

func (s *Stack) handoffSocket(app string) string { return filepath.Join(s.handoffDir, app+".sock") }

func (s *Stack) gatewayPort() int {
	if gw := s.App("gateway"); gw != nil {
		return gw.Port
	}
	return 0
}

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

func (a *App) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	var last string
	for {
		a.mu.Lock()
		app, dpr := a.app, a.dpr
		a.mu.Unlock()
		for _, p := range []*procs.Proc{app, dpr} {
			if p.Exited() {
				return fmt.Errorf("%s exited before it was ready (%v):\n  %s", p.Name, p.Err(), strings.Join(p.Tail(), "\n  "))
			}
		}
		resp, err := hc.Get(a.URL() + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last /readyz: %s)\n  %s", a.Name, ctx.Err(), last,
				strings.Join(append(app.Tail(), dpr.Tail()...), "\n  "))
		case <-t.C:
		}
	}
}

// waitReady waits for every app. The launcher picks free ports and
// releases them before daprd binds them, so another process (a parallel
// test's stack) can take one in between; a sidecar that dies with "address
// already in use" is started again on new ports, up to three times.
func (s *Stack) waitReady(ctx context.Context, daprdPath string, width int) error {
	type result struct {
		app *App
		err error
	}
	results := make(chan result, len(s.apps))
	for _, a := range s.apps {
		go func() { results <- result{a, a.waitReady(ctx)} }()
	}
	var errs []error
	retries := map[*App]int{}
	for pending := len(s.apps); pending > 0; pending-- {
		r := <-results
		if r.err == nil {
			continue
		}
		if r.app.bindFailed() && retries[r.app] < 3 && ctx.Err() == nil {
			retries[r.app]++
			fmt.Fprintf(s.opts.Progress, "papo: %s lost a port to another process; restarting it on new ports\n", r.app.Name)
			if err := r.app.newSidecarPorts(); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := s.writePrometheusConfig(); err != nil {
				errs = append(errs, err)
				continue
			}
			r.app.Stop()
			if err := r.app.start(daprdPath, width); err != nil {
				errs = append(errs, err)
				continue
			}
			pending++
			go func() { results <- result{r.app, r.app.waitReady(ctx)} }()
			continue
		}
		errs = append(errs, r.err)
	}
	return errors.Join(errs...)
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

// Stop stops the stack in order: the gateway first (no new clients), then
// ws (clients are told to go away), then the other services, their
// sidecars, and the broker.
func (s *Stack) Stop() {
	stopAll := func(appIDs ...string) {
		var wg sync.WaitGroup
		for _, a := range s.apps {
			for _, id := range appIDs {
				if a.AppID == id {
					wg.Add(1)
					go func() { defer wg.Done(); a.Stop() }()
				}
			}
		}
		wg.Wait()
	}
	stopAll("gateway")
	stopAll("ws")
	stopAll("auth", "message", "presence", "notification")
	if s.nats != nil {
		s.nats.Stop()
		s.nats = nil
	}
	if s.kafka != nil {
		s.kafka.Stop()
		s.kafka = nil
	}
	if s.sink != nil {
		s.sink.stop()
		s.sink = nil
	}
	if s.handoffTemp {
		_ = os.RemoveAll(s.handoffDir)
		s.handoffTemp = false
	}
	if s.lock != nil {
		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		s.lock.Close()
		s.lock = nil
	}
}

// KafkaPid is the process id of the Kafka stand-in (kafka-postgres), or
// 0 when the stack runs none; benchmarks count its CPU.
func (s *Stack) KafkaPid() int {
	if s.kafka == nil {
		return 0
	}
	return s.kafka.Pid()
}

// startKafka builds and starts the Kafka stand-in with its data in the
// data dir. Each topic keeps its messages as long as its JetStream stream
// in the local profile does (natsjs): announcements of what is durable
// elsewhere a quarter of an hour, the queues of work a day.
func (s *Stack) startKafka(ctx context.Context, binDir string) error {
	bin := filepath.Join(binDir, "kafkafake")
	fmt.Fprintf(s.opts.Progress, "papo: building the Kafka stand-in (tools/kafkafake) into %s\n", bin)
	if err := kafkafake.Build(ctx, s.opts.Root, bin); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	topics := map[string]time.Duration{}
	for _, topic := range events.AllTopics {
		topics[topic] = natsjs.StreamConfig(topic, 24*time.Hour).MaxAge
	}
	s.kafka, err = kafkafake.Start(ctx, kafkafake.Options{
		Bin:     bin,
		Port:    port,
		DataDir: filepath.Join(s.DataDir, "kafka"),
		Topics:  topics,
		Log:     s.opts.Log,
	})
	return err
}

// DaprdPath returns the daprd binary the stack uses.
func (s *Stack) DaprdPath(ctx context.Context) (string, error) {
	return daprd.Locate(ctx, s.opts.Root, s.opts.Progress)
}

// buildServices compiles every service into binDir in one go build.
func buildServices(ctx context.Context, root, binDir string, progress io.Writer) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", binDir + string(os.PathSeparator)}
	for _, svc := range Services {
		args = append(args, "./services/"+svc)
	}
	fmt.Fprintf(progress, "papo: building services into %s\n", binDir)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build services: %w\n%s", err, out)
	}
	return nil
}

// newTokens makes a stack's API tokens, 32 random bytes each, and writes
// them to path (mode 0600) as KEY=value lines, for an operator who wants
// to call a sidecar or an app by hand.
func newTokens(path string) (Tokens, error) {
	random := func() (string, error) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("make an API token: %w", err)
		}
		return hex.EncodeToString(b[:]), nil
	}
	var t Tokens
	var err error
	if t.App, err = random(); err != nil {
		return t, err
	}
	if t.Dapr, err = random(); err != nil {
		return t, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return t, err
	}
	defer f.Close()
	// A file left from before with looser permissions keeps them on open.
	if err := f.Chmod(0o600); err != nil {
		return t, err
	}
	if _, err := fmt.Fprintf(f, "APP_API_TOKEN=%s\nDAPR_API_TOKEN=%s\n", t.App, t.Dapr); err != nil {
		return t, err
	}
	return t, f.Close()
}

func ensureFile(path, content string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return os.WriteFile(path, []byte(content), 0o600)
}

func freePort() (int, error) {
	ps, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// FreePorts asks the kernel for n distinct free loopback ports. They are
// held open together so the kernel cannot hand out one twice.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
