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
