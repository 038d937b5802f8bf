package daprd

import (
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
