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

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{}), // the file's defaults, not this machine's env
		cli.WithInterpolation(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
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
