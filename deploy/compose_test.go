package deploy

import (
	"context"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeApps maps each compose service that runs a papo app to its app-id:
// ws runs as two services, one per replica.
var composeApps = map[string]string{
	"gateway":      "gateway",
	"auth":         "auth",
	"message":      "message",
	"presence":     "presence",
	"notification": "notification",
	"ws-1":         "ws",
	"ws-2":         "ws",
}

// composeSecrets are the variables docker-compose.yml refuses to start
// without; no default for any of them ships with the file.
var composeSecrets = map[string]string{
	"PAPO_APP_API_TOKEN":  "app-token-from-the-operator-0123456789",
	"PAPO_DAPR_API_TOKEN": "dapr-token-from-the-operator-012345678",
	"MYSQL_ROOT_PASSWORD": "password-from-the-operator",
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	var env []string
	for k, v := range composeSecrets {
		env = append(env, k+"="+v)
	}
	p, err := loadComposeWith(env)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// loadComposeWith loads docker-compose.yml with env as the whole
// environment (the file's defaults, not this machine's).
func loadComposeWith(env []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
		cli.WithInterpolation(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// TestComposeShipsNoSecrets: without the operator's tokens and database
// password compose refuses to start, rather than run with a default; the
// dev signing-key switch is off unless asked for; the secrets file is not
// world-writable.
func TestComposeShipsNoSecrets(t *testing.T) {
	for missing := range composeSecrets {
		var env []string
		for k, v := range composeSecrets {
			if k != missing {
				env = append(env, k+"="+v)
			}
		}
		if _, err := loadComposeWith(env); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: %v, want a refusal naming it", missing, err)
		}
	}
	p := loadCompose(t)
	for _, svc := range p.Services {
		for k, v := range svc.Environment {
			if v == nil {
				continue
			}
			for _, secret := range composeSecrets {
				if strings.Contains(*v, secret) && !strings.Contains(k, "TOKEN") && k != "PAPO_MYSQL_DSN" && k != "MARIADB_ROOT_PASSWORD" {
					t.Errorf("%s %s carries a secret", svc.Name, k)
				}
			}
		}
	}
	if v := p.Services["auth"].Environment["AUTH_DEV_GENERATE_KEYS"]; v != nil && *v != "false" {
		t.Errorf("auth AUTH_DEV_GENERATE_KEYS = %q by default; generated keys are for trying papo out only", *v)
	}
	init := strings.Join(p.Services["auth-secrets"].Command, " ")
	if strings.Contains(init, "666") || strings.Contains(init, "777") || !strings.Contains(init, "chmod 600") {
		t.Errorf("the secrets file's mode: %q, want 0600", init)
	}
}

// flag returns the value after name in args.
func flag(args []string, name string) string {
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

func TestComposeGivesEveryAppASidecarInItsNetworkNamespace(t *testing.T) {
	p := loadCompose(t)
	for svc, appID := range composeApps {
		t.Run(svc, func(t *testing.T) {
			a := appByID(t, appID)
			s, err := p.GetService(svc)
			if err != nil {
				t.Fatal(err)
			}
			if s.Build == nil || s.Build.Args["SERVICE"] == nil || *s.Build.Args["SERVICE"] != appID {
				t.Errorf("%s is not built from services/Dockerfile with SERVICE=%s", svc, appID)
			}
			port := s.Environment["APP_PORT"]
			if port == nil || *port != strconv.Itoa(a.port) {
				t.Errorf("APP_PORT = %v, want %d", port, a.port)
			}
			if appID == "ws" && (s.Environment["WS_ALLOWED_ORIGINS"] == nil || *s.Environment["WS_ALLOWED_ORIGINS"] == "") {
				t.Errorf("%s has no WS_ALLOWED_ORIGINS: browsers could not open a socket", svc)
			}
			for _, env := range []string{"APP_HOST", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "LOG_LEVEL"} {
				if s.Environment[env] == nil {
					t.Errorf("%s has no %s", svc, env)
				}
			}
			// App and sidecar share a network namespace: an app that only
			// its sidecar calls listens on loopback. The gateway is
			// published; the gateway proxies /ws to the ws replicas.
			wantHost := "127.0.0.1"
			if appID == "gateway" || appID == "ws" {
				wantHost = "0.0.0.0"
			}
			if h := s.Environment["APP_HOST"]; h == nil || *h != wantHost {
				t.Errorf("%s APP_HOST = %v, want %s", svc, h, wantHost)
			}

			sc, err := p.GetService(svc + "-dapr")
			if err != nil {
				t.Fatalf("no sidecar: %v", err)
			}
			if got, want := sc.NetworkMode, "service:"+svc; got != want {
				t.Errorf("sidecar network_mode %q, want %q", got, want)
			}
			args := []string(sc.Command)
			if got := flag(args, "--app-id"); got != appID {
				t.Errorf("sidecar --app-id %q, want %q", got, appID)
			}
			if got := flag(args, "--app-port"); got != strconv.Itoa(a.port) {
				t.Errorf("sidecar --app-port %q, want %d", got, a.port)
			}
			if got := flag(args, "--dapr-http-port"); port != nil && s.Environment["DAPR_HTTP_PORT"] != nil && got != *s.Environment["DAPR_HTTP_PORT"] {
				t.Errorf("sidecar --dapr-http-port %q, app's DAPR_HTTP_PORT %q", got, *s.Environment["DAPR_HTTP_PORT"])
			}
			if got := flag(args, "--dapr-grpc-port"); s.Environment["DAPR_GRPC_PORT"] != nil && got != *s.Environment["DAPR_GRPC_PORT"] {
				t.Errorf("sidecar --dapr-grpc-port %q, app's DAPR_GRPC_PORT %q", got, *s.Environment["DAPR_GRPC_PORT"])
			}
			if sc.Image != "daprio/daprd:1.14.0" {
				t.Errorf("sidecar image %q, want daprd 1.14.0", sc.Image)
			}
			// Its own Configuration (the API allow-list), its API on
			// loopback, and both tokens from the operator.
			if got, want := flag(args, "--config"), "/dapr/"+appID+".yaml"; got != want {
				t.Errorf("sidecar --config %q, want %q", got, want)
			}
			for _, f := range []string{"--dapr-listen-addresses", "--dapr-public-listen-address"} {
				if got := flag(args, f); got != "127.0.0.1" {
					t.Errorf("sidecar %s %q, want 127.0.0.1", f, got)
				}
			}
			for env, v := range map[string]string{
				"APP_API_TOKEN":  composeSecrets["PAPO_APP_API_TOKEN"],
				"DAPR_API_TOKEN": composeSecrets["PAPO_DAPR_API_TOKEN"],
			} {
				if got := sc.Environment[env]; got == nil || *got != v {
					t.Errorf("sidecar %s = %v, want the operator's", env, got)
				}
				if got := s.Environment[env]; got == nil || *got != v {
					t.Errorf("%s %s = %v, want the operator's", svc, env, got)
				}
			}
			// The resources and config paths inside the container must be
			// mounted from folders that exist in the repository.
			mounts := map[string]string{}
			for _, v := range sc.Volumes {
				mounts[v.Target] = v.Source
			}
			for _, f := range []string{"--resources-path", "--config"} {
				target := flag(args, f)
				if f == "--config" {
					target = filepath.Dir(target)
				}
				src, ok := mounts[target]
				if !ok {
					t.Errorf("%s %s is not mounted", f, target)
					continue
				}
				rel, err := filepath.Rel(mustAbs(t, root), src)
				if err != nil {
					t.Fatal(err)
				}
				mustExist(t, f, rel)
			}
		})
	}
	if p.Services["gateway"].Ports == nil || p.Services["gateway"].Ports[0].Target != 8080 {
		t.Errorf("gateway does not publish port 8080")
	}
}

// TestComposeStartsTheProfileInfrastructure checks that NATS runs with
// JetStream and that sidecars wait for the streams and the database.
func TestComposeStartsTheProfileInfrastructure(t *testing.T) {
	p := loadCompose(t)
	nats, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains([]string(nats.Command), "-js") {
		t.Errorf("nats runs without -js: %v", nats.Command)
	}
	for svc := range composeApps {
		sc := p.Services[svc+"-dapr"]
		for dep, cond := range map[string]string{
			"nats-streams": types.ServiceConditionCompletedSuccessfully,
			"mysql":        types.ServiceConditionHealthy,
		} {
			d, ok := sc.DependsOn[dep]
			if !ok || d.Condition != cond {
				t.Errorf("%s-dapr does not wait for %s (%s)", svc, dep, cond)
			}
		}
	}
	if _, err := p.GetService("mysql"); err != nil {
		t.Error(err)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestComposeHandsWebSocketsToTheReplicas: the gateway's hand-off socket
// for each ws upstream is that replica's WS_HANDOFF_SOCKET, in a volume
// both containers mount (docs/deploy.md).
func TestComposeHandsWebSocketsToTheReplicas(t *testing.T) {
	p := loadCompose(t)
	gw := p.Services["gateway"]
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	upstreams := strings.Split(env(gw, "GATEWAY_WS_UPSTREAMS"), ",")
	sockets := strings.Split(env(gw, "GATEWAY_WS_HANDOFF"), ",")
	if len(sockets) != len(upstreams) {
		t.Fatalf("%d hand-off sockets for %d upstreams", len(sockets), len(upstreams))
	}
	mountOf := func(s types.ServiceConfig, path string) string {
		for _, v := range s.Volumes {
			if strings.HasPrefix(path, v.Target+"/") {
				return v.Source
			}
		}
		return ""
	}
	for i, up := range upstreams {
		u, err := url.Parse(up)
		if err != nil {
			t.Fatal(err)
		}
		ws, ok := p.Services[u.Hostname()]
		if !ok {
			t.Fatalf("upstream %s is no service", up)
		}
		if got := env(ws, "WS_HANDOFF_SOCKET"); got != sockets[i] {
			t.Errorf("%s listens for hand-offs on %q, the gateway hands its sockets to %q", ws.Name, got, sockets[i])
		}
		gv, wv := mountOf(gw, sockets[i]), mountOf(ws, sockets[i])
		if gv == "" || gv != wv {
			t.Errorf("%s: the gateway mounts %q and %s mounts %q there: they must share one volume", sockets[i], gv, ws.Name, wv)
		}
		if vol, ok := p.Volumes[gv]; !ok || !strings.Contains(vol.DriverOpts["o"], "mode=0700") {
			t.Errorf("volume %q is not private (mode=0700)", gv)
		}
	}
}
