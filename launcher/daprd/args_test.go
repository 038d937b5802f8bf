package daprd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSidecarListensOnLoopbackOnly: every listener daprd opens is bound to
// 127.0.0.1: its own metrics server (which upstream 1.14.0 binds to every
// interface whatever --metrics-listen-address says) is off, and papo's
// build is told to serve the metrics on loopback instead.
func TestSidecarListensOnLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics bool
		env     string
	}{
		{"papo's daprd", true, "PAPO_DAPRD_METRICS_ADDR=127.0.0.1:5"},
		{"upstream's", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Sidecar{AppID: "a", AppPort: "1", HTTPPort: 2, GRPCPort: 3, InternalPort: 4, MetricsPort: 5, PublicPort: 6, Metrics: tc.metrics}
			args := strings.Join(s.Args(), " ")
			for _, want := range []string{
				"--dapr-listen-addresses 127.0.0.1",
				"--dapr-internal-grpc-listen-address 127.0.0.1",
				"--dapr-public-listen-address 127.0.0.1",
				"--app-channel-address 127.0.0.1",
				"--enable-metrics=false",
			} {
				if !strings.Contains(args, want) {
					t.Errorf("daprd args %q lack %q", args, want)
				}
			}
			env := strings.Join(s.Env(), " ")
			if got := strings.Contains(env, "PAPO_DAPRD_METRICS_ADDR"); got != (tc.env != "") || !strings.Contains(env, tc.env) {
				t.Errorf("daprd env %q, want %q", env, tc.env)
			}
		})
	}
}

func TestSidecarGetsItsTokensFromTheEnvironment(t *testing.T) {
	env := strings.Join(Sidecar{APIToken: "dapr-token", AppToken: "app-token"}.Env(), " ")
	for _, want := range []string{"DAPR_API_TOKEN=dapr-token", "APP_API_TOKEN=app-token", "DAPR_HOST_IP=127.0.0.1"} {
		if !strings.Contains(env, want) {
			t.Errorf("daprd env %q lacks %q", env, want)
		}
	}
	if env := strings.Join(Sidecar{}.Env(), " "); strings.Contains(env, "TOKEN") {
		t.Errorf("a sidecar without tokens gets %q", env)
	}
}

func TestServesHTTPReadsTheAPIAllowList(t *testing.T) {
	dir := t.TempDir()
	write := func(name, api string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n"+api), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, api string
		want      bool
	}{
		{"no allow-list: every API", "  tracing: {samplingRate: \"0\"}\n", true},
		{"named", "  api:\n    allowed:\n      - {name: invoke, version: v1, protocol: http}\n", true},
		{"only other HTTP APIs", "  api:\n    allowed:\n      - {name: healthz, version: v1, protocol: http}\n      - {name: state, version: v1, protocol: grpc}\n", false},
		{"only gRPC entries: every HTTP API", "  api:\n    allowed:\n      - {name: state, version: v1, protocol: grpc}\n", true},
		{"denied", "  api:\n    denied:\n      - {name: invoke, version: v1, protocol: http}\n", false},
	} {
		got, err := ServesHTTP(write(strings.ReplaceAll(c.name, " ", "_")+".yaml", c.api), "invoke")
		if err != nil || got != c.want {
			t.Errorf("%s: got %v %v, want %v", c.name, got, err, c.want)
		}
	}
	// The project's own files, as the launcher reads them.
	for app, want := range map[string]bool{"gateway": true, "auth": false, "message": true, "ws": true} {
		got, err := ServesHTTP(filepath.Join("..", "..", "dapr", app+".yaml"), "invoke")
		if err != nil || got != want {
			t.Errorf("dapr/%s.yaml serves invoke: %v %v, want %v", app, got, err, want)
		}
	}
}
