package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/settings"
)

// fakeSidecar records what reaches the sidecar's invoke API and answers
// like the callee would.
type fakeSidecar struct {
	mu   sync.Mutex
	seen []*http.Request
	body []string
	// answer, when set, answers instead of the default 418.
	answer http.HandlerFunc
	// down names the apps whose /readyz fails (the status board's checks,
	// which are not recorded).
	down sync.Map
}

func (f *fakeSidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if app, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1.0/invoke/"), "/method/readyz"); ok {
		if _, isDown := f.down.Load(app); isDown {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready"}`)
		return
	}
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b)) // answer reads it too
	f.mu.Lock()
	f.seen = append(f.seen, r.Clone(r.Context()))
	f.body = append(f.body, string(b))
	f.mu.Unlock()
	if f.answer != nil {
		f.answer(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTeapot) // a status only the callee could choose
	_, _ = w.Write([]byte(`{"error":{"code":"teapot","message":"answered by the callee"}}`))
}

func (f *fakeSidecar) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

func (f *fakeSidecar) last(t *testing.T) *http.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("nothing reached the sidecar")
	}
	return f.seen[len(f.seen)-1]
}

// The tokens the test gateway holds: the ws replicas' app API token and
// its sidecar's Dapr API token.
const (
	testAppToken  = "test-app-token-0123456789abcdef0123"
	testDaprToken = "test-dapr-token-0123456789abcdef012"
)

type fixture struct {
	gw      *httptest.Server
	sidecar *fakeSidecar
	iss     *authntest.Issuer
	ws      []*httptest.Server

	mu     sync.Mutex
	wsSeen []*http.Request // what reached the ws replicas, health checks apart
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	return newFixtureWith(t, &fakeSidecar{}, mutate)
}

func newFixtureWith(t *testing.T, sidecar *fakeSidecar, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{sidecar: sidecar, iss: authntest.New()}
	sc := httptest.NewServer(f.sidecar)
	t.Cleanup(sc.Close)
	for i := range 2 {
		name := []string{"ws-a", "ws-b"}[i]
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" {
				return // the gateway's health checks
			}
			f.mu.Lock()
			f.wsSeen = append(f.wsSeen, r.Clone(context.Background()))
			f.mu.Unlock()
			w.Header().Set("X-Upstream", name)
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(srv.Close)
		f.ws = append(f.ws, srv)
	}
	u, _ := url.Parse(sc.URL)
	cfg := Config{
		Base:        settings.Base{Issuer: "papo-test", Audience: "papo", AppAPIToken: testAppToken},
		WSUpstreams: []string{f.ws[0].URL, f.ws[1].URL},
		RatePerIP:   1000, RatePerUser: 1000, MaxBody: 1024, WSHealthInterval: time.Second,
		StatusInterval: 20 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := NewServer(t.Context(), slog.New(slog.NewTextHandler(io.Discard, nil)), cfg, invoke.New(u.Port(), testDaprToken), f.iss.Verifier(),
		func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	f.gw = httptest.NewServer(h)
	t.Cleanup(f.gw.Close)
	return f
}

// wsCount is how many requests reached the ws replicas.
func (f *fixture) wsCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.wsSeen)
}

func (f *fixture) do(t *testing.T, method, path, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.gw.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	return body.Error.Code
}

func TestRoutesGoToTheOwningServiceThroughDapr(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)
	cases := []struct {
		method, path, wantPath string
	}{
		{"POST", "/api/v1/auth/login", "/v1.0/invoke/auth/method/api/v1/auth/login"},
		{"GET", "/api/v1/me", "/v1.0/invoke/auth/method/api/v1/me"},
		{"GET", "/api/v1/users?username=bob", "/v1.0/invoke/auth/method/api/v1/users"},
		{"GET", "/api/v1/rooms", "/v1.0/invoke/message/method/api/v1/rooms"},
		{"GET", "/api/v1/rooms/r1/events?after=3&limit=2", "/v1.0/invoke/message/method/api/v1/rooms/r1/events"},
		{"POST", "/api/v1/dms", "/v1.0/invoke/message/method/api/v1/dms"},
		{"PUT", "/api/v1/rooms/r1/notifications", "/v1.0/invoke/notification/method/api/v1/rooms/r1/notifications"},
		{"GET", "/api/v1/presence?user_ids=a,b", "/v1.0/invoke/presence/method/api/v1/presence"},
		{"POST", "/api/v1/devices", "/v1.0/invoke/notification/method/api/v1/devices"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			resp := f.do(t, c.method, c.path, tok, "")
			if resp.StatusCode != http.StatusTeapot {
				t.Fatalf("status %d, want the callee's 418", resp.StatusCode)
			}
			got := f.sidecar.last(t)
			if got.URL.Path != c.wantPath {
				t.Errorf("path %q, want %q", got.URL.Path, c.wantPath)
			}
			if want, _ := url.Parse(c.path); got.URL.RawQuery != want.RawQuery {
				t.Errorf("query %q, want %q", got.URL.RawQuery, want.RawQuery)
			}
			if got.Header.Get("Authorization") != "Bearer "+tok {
				t.Errorf("the bearer token was not forwarded")
			}
			if got.Header.Get("X-Request-Id") == "" {
				t.Errorf("no request id forwarded")
			}
			if got.Header.Get("Dapr-Api-Token") != testDaprToken {
				t.Errorf("the sidecar's API token was not sent")
			}
		})
	}
}

func TestTokenRequiredAtTheEdgeExceptOpenRoutes(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/api/v1/me", "/api/v1/rooms", "/api/v1/presence", "/api/v1/auth/logout"} {
		resp := f.do(t, "GET", path, "", "")
		if resp.StatusCode != http.StatusUnauthorized || errorCode(t, resp) != "missing_token" {
			t.Errorf("%s without a token: %d", path, resp.StatusCode)
		}
		resp = f.do(t, "GET", path, "not-a-jwt", "")
		if resp.StatusCode != http.StatusUnauthorized || errorCode(t, resp) != "invalid_token" {
			t.Errorf("%s with a bad token: %d", path, resp.StatusCode)
		}
	}
	other := authntest.New() // a key the gateway does not trust
	resp := f.do(t, "GET", "/api/v1/me", other.Token("u1", "s1", time.Minute), "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token signed by an unknown key: %d", resp.StatusCode)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/auth/register"}, {"POST", "/api/v1/auth/login"},
		{"POST", "/api/v1/auth/refresh"}, {"GET", "/api/v1/auth/jwks"},
	} {
		if resp := f.do(t, c.method, c.path, "", ""); resp.StatusCode != http.StatusTeapot {
			t.Errorf("open route %s %s: %d, want it forwarded", c.method, c.path, resp.StatusCode)
		}
	}
}

func TestRateLimitPerClientAddress(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RatePerIP = 3 })
	var last *http.Response
	for range 4 {
		last = f.do(t, "POST", "/api/v1/auth/login", "", "")
	}
	if last.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th request: %d, want 429", last.StatusCode)
	}
	if last.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if code := errorCode(t, last); code != "rate_limited" {
		t.Errorf("code %q", code)
	}
}

func TestRateLimitPerUser(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RatePerUser = 2 })
	alice, bob := f.iss.Token("alice", "s1", time.Minute), f.iss.Token("bob", "s2", time.Minute)
	for range 2 {
		if resp := f.do(t, "GET", "/api/v1/me", alice, ""); resp.StatusCode != http.StatusTeapot {
			t.Fatalf("within the limit: %d", resp.StatusCode)
		}
	}
	if resp := f.do(t, "GET", "/api/v1/me", alice, ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice over her limit: %d, want 429", resp.StatusCode)
	}
	if resp := f.do(t, "GET", "/api/v1/me", bob, ""); resp.StatusCode != http.StatusTeapot {
		t.Fatalf("bob is limited by alice's traffic: %d", resp.StatusCode)
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, nil) // MaxBody 1024
	tok := f.iss.Token("u1", "s1", time.Minute)
	resp := f.do(t, "POST", "/api/v1/rooms", tok, `{"name":"`+strings.Repeat("x", 2000)+`"}`)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || errorCode(t, resp) != "body_too_large" {
		t.Fatalf("oversize body: %d", resp.StatusCode)
	}
	if resp := f.do(t, "POST", "/api/v1/rooms", tok, `{"name":"ok"}`); resp.StatusCode != http.StatusTeapot {
		t.Fatalf("small body: %d", resp.StatusCode)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/", "/api/v1/auth/jwks", "/healthz"} {
		resp := f.do(t, "GET", path, "", "")
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: missing nosniff or referrer policy", path)
		}
	}
}

func TestUnknownAPIRouteIsAJSON404(t *testing.T) {
	f := newFixture(t, nil)
	resp := f.do(t, "GET", "/api/v1/nope", f.iss.Token("u1", "s1", time.Minute), "")
	if resp.StatusCode != http.StatusNotFound || errorCode(t, resp) != "not_found" {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestDaprCallbacksAreNotTheWebClient: the sidecar's start-up call for
// subscriptions gets an empty JSON list, not the web client's HTML (which
// it logged as "error getting topics from app: invalid character '<'"),
// and Dapr's other callbacks are a JSON 404.
func TestDaprCallbacksAreNotTheWebClient(t *testing.T) {
	f := newFixture(t, nil)
	resp := f.do(t, "GET", "/dapr/subscribe", "", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("/dapr/subscribe: %d %q (%s)", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	resp = f.do(t, "GET", "/dapr/config", "", "")
	if resp.StatusCode != http.StatusNotFound || errorCode(t, resp) != "not_found" {
		t.Fatalf("/dapr/config: status %d", resp.StatusCode)
	}
}
