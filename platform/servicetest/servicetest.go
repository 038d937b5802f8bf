// Package servicetest runs a papo service's run function in a test: on a
// free loopback port, with sidecar ports nobody answers, so a test can
// check what the service does before (and without) its sidecar — /healthz
// at once, /readyz 503 — and that it stops cleanly.
package servicetest

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"
)

// AppToken and DaprToken are the API tokens Start gives the service
// (APP_API_TOKEN, DAPR_API_TOKEN); a test sends AppToken in the
// dapr-api-token header to reach routes other than the probes, as the
// service's sidecar would.
const (
	AppToken  = "servicetest-app-token-0123456789abcdef"
	DaprToken = "servicetest-dapr-token-0123456789abcdef"
)

// Env is the environment of a service under test: APP_API_TOKEN and
// DAPR_API_TOKEN, then vars, which may override them. Tests that load a
// service's configuration without starting it pass it to service.Load; it
// never touches the process environment, so they may run in parallel.
func Env(vars map[string]string) settings.Getenv {
	env := map[string]string{"APP_API_TOKEN": AppToken, "DAPR_API_TOKEN": DaprToken}
	maps.Copy(env, vars)
	return settings.Env(env)
}

// Start runs run with APP_HOST, APP_PORT, DAPR_HTTP_PORT, DAPR_GRPC_PORT,
// LOG_LEVEL, the API tokens and METRICS_ADDR (empty: off), then env,
// which may override them, as its own environment (the test may be
// parallel), and waits until /healthz answers 200. It returns
// the service's base URL and a stop function that cancels
// run and fails the test unless run returns nil within 15 s.
func Start(t *testing.T, run service.RunFunc, env map[string]string) (base string, stop func()) {
	t.Helper()
	ports := FreePorts(t, 3)
	vars := map[string]string{
		"APP_HOST": "127.0.0.1", "APP_PORT": ports[0],
		// No sidecar answers on these: readiness must say so.
		"DAPR_HTTP_PORT": ports[1], "DAPR_GRPC_PORT": ports[2],
		"LOG_LEVEL":     "error",
		"APP_API_TOKEN": AppToken, "DAPR_API_TOKEN": DaprToken,
		// No metrics listener unless env asks for one: the default port
		// would be shared by tests running in parallel.
		"METRICS_ADDR": "",
	}
	maps.Copy(vars, env)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, settings.Env(vars), io.Discard) }()

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
	return StatusWith(t, method, url, nil)
}

// StatusWith is Status with extra request headers.
func StatusWith(t *testing.T, method, url string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// FreePorts returns n distinct loopback ports nothing listens on right
// now. Their listeners are held open together until all n are known, so
// the kernel cannot hand out one port twice (two calls for one port each
// could).
func FreePorts(t *testing.T, n int) []string {
	t.Helper()
	ports := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports
}

// WithAppToken is the header the service's sidecar sends: AppToken in
// dapr-api-token.
func WithAppToken() http.Header {
	return http.Header{"Dapr-Api-Token": {AppToken}}
}

// RequireAppToken checks that method path on base is refused with 401
// without the app API token and reaches the service's own handler with
// it (any status but that 401).
func RequireAppToken(t *testing.T, base, method, path string) {
	t.Helper()
	if got := Status(t, method, base+path); got != http.StatusUnauthorized {
		t.Errorf("%s %s without the app token: %d, want 401", method, path, got)
	}
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("dapr-api-token", AppToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body.Error.Code == "app_token_required" {
		t.Errorf("%s %s with the app token: refused", method, path)
	}
}
