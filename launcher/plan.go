package launcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/procs"
)

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
		if n.appID == "gateway" {
			if err := s.splitGatewayPorts(a); err != nil {
				return err
			}
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
		host, port := "127.0.0.1", a.Port
		if a.AppID == "gateway" {
			if gwHost != "" {
				host = gwHost
			}
			port = a.PublicPort
		}
		env := []string{
			"APP_HOST=" + host,
			"APP_PORT=" + strconv.Itoa(port),
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
			env = append(env, s.gatewayEnv(a)...)
		case "auth":
			env = append(env, "AUTH_DEV_GENERATE_KEYS=true", "AUTH_DEV_KEY_FILE="+vars["PAPO_SECRETS_FILE"])
		case "notification":
			// Web Push works out of the box: keys kept in the data dir.
			env = append(env, "NOTIFICATION_VAPID_PUBLIC_KEY="+s.vapid.Public, "NOTIFICATION_VAPID_PRIVATE_KEY="+s.vapid.Private)
		case "ws":
			env = append(env, "WS_ALLOWED_ORIGINS="+s.gatewayOrigins(), "WS_HANDOFF_SOCKET="+s.handoffSocket(a.Name))
		}
		if !keepsEveryCore(a.AppID) {
			env = append(env, s.opts.goMaxProcsEnv()...)
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
		s.GatewayURL = s.gatewayScheme() + "://" + net.JoinHostPort(host, strconv.Itoa(gw.PublicPort))
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
		return gw.PublicPort
	}
	return 0
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

// keepsEveryCore reports whether an app keeps Go's default GOMAXPROCS
// instead of the stack's: auth, whose password hashing is CPU-bound work
// that comes in bursts (a crowd logging in), a request per core; and ws,
// whose work grows with the deliveries (every event written to every
// member's socket: 25,000 writes a second per replica at scenario B) and
// which, held to one thread, fell a second behind there
// (docs/benchmarks.md, "One scheduler thread per process").
func keepsEveryCore(appID string) bool {
	return appID == "auth" || appID == "ws"
}
