package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/platform/httpapi"
)

func TestRequireAppTokenLetsOnlyTheSidecarAndProbesThrough(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	var sawToken []string
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken = append(sawToken, r.Header.Get(httpapi.AppTokenHeader))
		w.WriteHeader(http.StatusNoContent)
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name, method, path, token string
		want                      int
	}{
		{"internal route with the token", "GET", "/internal/v1/rooms/r1/members", token, 204},
		{"pub/sub delivery with the token", "POST", "/events/submitted", token, 204},
		{"subscription list with the token", "GET", "/dapr/subscribe", token, 204},
		{"internal route without a token", "GET", "/internal/v1/rooms/r1/members", "", 401},
		{"pub/sub delivery without a token", "POST", "/events/submitted", "", 401},
		{"subscription list without a token", "GET", "/dapr/subscribe", "", 401},
		{"public route without a token", "GET", "/api/v1/rooms", "", 401},
		{"a wrong token", "GET", "/internal/v1/revocations", "0123456789abcdef0123456789abcdeX", 401},
		{"a prefix of the token", "GET", "/internal/v1/revocations", token[:31], 401},
		{"the token and more", "GET", "/internal/v1/revocations", token + "x", 401},
		{"liveness probe", "GET", "/healthz", "", 204},
		{"readiness probe", "GET", "/readyz", "", 204},
		{"probe by HEAD", "HEAD", "/readyz", "", 204},
		{"a probe path that walks elsewhere", "GET", "/healthz/../internal/v1/revocations", "", 401},
		{"POST to a probe path", "POST", "/healthz", "", 401},
		{"a public path", "GET", "/ws", "", 204},
		{"POST to a public path", "POST", "/ws", "", 401},
		{"below a public path", "GET", "/ws/x", "", 401},
	}
	h := httpapi.RequireAppToken(token, quiet, inner, "/ws")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sawToken = nil
			r := httptest.NewRequest(c.method, "http://app"+c.path, nil)
			if c.token != "" {
				r.Header.Set(httpapi.AppTokenHeader, c.token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Code; got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
			if c.want == 401 && !strings.Contains(w.Body.String(), `"app_token_required"`) {
				t.Errorf("body %q lacks the error code", w.Body.String())
			}
			for _, seen := range sawToken {
				if seen != "" {
					t.Errorf("the handler saw the token %q; it must be removed", seen)
				}
			}
		})
	}
}

func TestRequireAppTokenWithNoTokenConfiguredRefusesAllButProbes(t *testing.T) {
	h := httpapi.RequireAppToken("", slog.New(slog.NewTextHandler(io.Discard, nil)),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for path, want := range map[string]int{"/internal/v1/x": 401, "/healthz": 204} {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set(httpapi.AppTokenHeader, "")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: got %d, want %d", path, w.Code, want)
		}
	}
}

func TestServerRefusesOversizedHeaders(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := httpapi.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, c := range []struct {
		name string
		size int
		want int
	}{
		{"an 8 KiB bearer token", 8 << 10, http.StatusNoContent},
		{"headers over the limit", httpapi.MaxHeaderBytes + 8<<10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL()+"/", nil)
			req.Header.Set("Authorization", "Bearer "+strings.Repeat("x", c.size))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, c.want)
			}
		})
	}
}

func TestListenAppServesOnlyProbesOnTheProbeListener(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpapi.Healthz())
	mux.Handle("GET /internal/v1/x", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	srv, err := httpapi.ListenApp("127.0.0.1:0", "127.0.0.1:0", token, mux, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, time.Second) }()
	probes := "http://" + srv.ProbesAddr().String()
	get := func(url string, withToken bool) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if withToken {
			req.Header.Set(httpapi.AppTokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		name      string
		url       string
		withToken bool
		want      int
	}{
		{"the app: a probe", srv.URL() + "/healthz", false, 200},
		{"the app: a route without the token", srv.URL() + "/internal/v1/x", false, 401},
		{"the app: a route with the token", srv.URL() + "/internal/v1/x", true, 204},
		{"the probe listener: a probe", probes + "/healthz", false, 200},
		{"the probe listener: a route, even with the token", probes + "/internal/v1/x", true, 404},
	} {
		if got := get(c.url, c.withToken); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := http.Get(probes + "/healthz"); err == nil {
		t.Error("the probe listener still answers after shutdown")
	}
}
