// Package servicetest runs a papo service's run function in a test: on a
// free loopback port, with sidecar ports nobody answers, so a test can
// check what the service does before (and without) its sidecar — /healthz
// at once, /readyz 503 — and that it stops cleanly.
package servicetest

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Run is a service's run function.
type Run func(ctx context.Context, stdout io.Writer) error

// Start sets APP_HOST, APP_PORT, DAPR_HTTP_PORT, DAPR_GRPC_PORT,
// LOG_LEVEL and METRICS_ADDR (empty: off), then env, which may override
// them, with t.Setenv — so the test cannot be parallel — starts run and
// waits until /healthz answers 200. It returns the service's base URL and a stop function that cancels
// run and fails the test unless run returns nil within 15 s.
func Start(t *testing.T, run Run, env map[string]string) (base string, stop func()) {
	t.Helper()
	port := FreePort(t)
	vars := map[string]string{
		"APP_HOST": "127.0.0.1", "APP_PORT": port,
		// No sidecar answers on these: readiness must say so.
		"DAPR_HTTP_PORT": FreePort(t), "DAPR_GRPC_PORT": FreePort(t),
		"LOG_LEVEL": "error",
		// No metrics listener unless env asks for one: the default port
		// would be shared by tests running in parallel.
		"METRICS_ADDR": "",
	}
	for k, v := range env {
		vars[k] = v
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, io.Discard) }()

	base = "http://127.0.0.1:" + vars["APP_PORT"]
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				cancel()
				t.Fatalf("/healthz = %d, want 200", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("/healthz did not answer within 10 s: %v", err)
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("run returned before serving: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("run did not return within 15 s of cancel")
		}
	}
	t.Cleanup(stop)
	return base, stop
}

// Status sends a bodiless request and returns the answer's status code.
func Status(t *testing.T, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
