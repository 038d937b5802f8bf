package daprd

import (
	"strings"
	"testing"
)

// TestSidecarListensOnLoopbackOnly: every listener daprd opens is bound to
// 127.0.0.1, and the metrics server (which 1.14.0 binds to every interface
// whatever --metrics-listen-address says) is off.
func TestSidecarListensOnLoopbackOnly(t *testing.T) {
	args := strings.Join(Sidecar{AppID: "a", AppPort: "1", HTTPPort: 2, GRPCPort: 3, InternalPort: 4, MetricsPort: 5, PublicPort: 6}.Args(), " ")
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
