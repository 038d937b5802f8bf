package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rawRequest sends a request line exactly as given (like curl
// --path-as-is) with headers, and returns the answer.
func rawRequest(t *testing.T, base, method, target string, header map[string]string) *http.Response {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + u.Host + "\r\nConnection: close\r\n")
	for k, v := range header {
		b.WriteString(k + ": " + v + "\r\n")
	}
	if method == "POST" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	} else {
		b.WriteString("\r\n")
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// proxiedPrefixes is every prefix the gateway routes to a service (and
// /ws, which it proxies to a ws replica).
var proxiedPrefixes = []string{
	"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/jwks",
	"/api/v1/auth/logout", "/api/v1/me", "/api/v1/users", "/api/v1/users/u1",
	"/api/v1/rooms", "/api/v1/rooms/r1/events", "/api/v1/rooms/r1/notifications",
	"/api/v1/dms", "/api/v1/presence", "/api/v1/devices", "/api/v1/devices/d1", "/ws",
}

// traversals turn a routed prefix into a path that reaches the sidecar's
// own API once a hop cleans or decodes it.
var traversals = []string{
	"/../../../../../../../v1.0/metadata",
	"/../../../../../../../v1.0/shutdown",
	"/../../../../../../../v1.0/publish/pubsub/messages.submitted",
	"/./x",
	"//v1.0/metadata",
	"/",
	"/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/v1.0/metadata",
	"/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/v1.0/metadata",
	"/..%2f..%2f..%2f..%2f..%2f..%2fv1.0%2fmetadata",
	"/..%2F..%2F..%2F..%2F..%2F..%2Fv1.0%2Fmetadata",
	"/%252e%252e/%252e%252e/v1.0/metadata",
	"/..%5c..%5c..%5cv1.0%5cmetadata",
	"/..\\..\\..\\v1.0\\metadata",
	"/x%00/../../v1.0/metadata",
	"/.%2e/.%2e/.%2e/v1.0/metadata",
}

func TestPathsThatCleaningWouldChangeAreRefusedBeforeAnyUpstreamCall(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)
	for _, prefix := range proxiedPrefixes {
		for _, trav := range traversals {
			target := prefix + trav
			t.Run(target, func(t *testing.T) {
				before, wsBefore := f.sidecar.count(), f.wsCount()
				for _, method := range []string{"GET", "POST"} {
					resp := rawRequest(t, f.gw.URL, method, target, map[string]string{"Authorization": "Bearer " + tok})
					if resp.StatusCode != http.StatusBadRequest {
						t.Fatalf("%s: status %d, want 400", method, resp.StatusCode)
					}
					if code := errorCode(t, resp); code != "invalid_path" {
						t.Fatalf("%s: code %q, want invalid_path", method, code)
					}
				}
				if f.sidecar.count() != before || f.wsCount() != wsBefore {
					t.Fatal("the request reached an upstream")
				}
			})
		}
	}
}

func TestCleanPathsStillReachTheirService(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)
	for _, c := range []struct{ target, wantPath string }{
		{"/api/v1/rooms/r%C3%A9sum%C3%A9/events?after=1", "/v1.0/invoke/message/method/api/v1/rooms/résumé/events"},
		{"/api/v1/users/u%201", "/v1.0/invoke/auth/method/api/v1/users/u 1"},
		{"/api/v1/rooms/a.b/events", "/v1.0/invoke/message/method/api/v1/rooms/a.b/events"},
		{"/api/v1/rooms/..a/events", "/v1.0/invoke/message/method/api/v1/rooms/..a/events"},
	} {
		resp := rawRequest(t, f.gw.URL, "GET", c.target, map[string]string{"Authorization": "Bearer " + tok})
		if resp.StatusCode != http.StatusTeapot {
			t.Errorf("%s: status %d, want the callee's 418", c.target, resp.StatusCode)
			continue
		}
		if got := f.sidecar.last(t).URL.Path; got != c.wantPath {
			t.Errorf("%s: upstream path %q, want %q", c.target, got, c.wantPath)
		}
	}
}

func TestOnlyAllowListedHeadersGoUpstream(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)
	injected := map[string]string{
		"Authorization":       "Bearer " + tok,
		"Accept":              "application/json",
		"X-Request-Id":        "client-request-1",
		"dapr-app-id":         "auth",
		"Dapr-Api-Token":      "client-chosen",
		"dapr-callee-app-id":  "auth",
		"dapr-http-status":    "200",
		"Cookie":              "session=1",
		"X-Forwarded-For":     "203.0.113.9",
		"Forwarded":           "for=203.0.113.9",
		"X-Forwarded-Host":    "evil.example",
		"Traceparent":         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Keep-Alive":          "timeout=5",
		"Proxy-Authorization": "Basic eDp5",
	}
	resp := rawRequest(t, f.gw.URL, "POST", "/api/v1/rooms", injected)
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := f.sidecar.last(t)
	want := map[string]string{
		"Authorization":   "Bearer " + tok,
		"Accept":          "application/json",
		"X-Request-Id":    "client-request-1",
		"Content-Type":    "application/json",
		"X-Forwarded-For": "127.0.0.1",   // the peer: no trusted proxy configured
		"Dapr-Api-Token":  testDaprToken, // the gateway's own, not the client's
		"Accept-Encoding": "gzip",        // net/http's transport adds it
		"Content-Length":  "2",
	}
	for k, v := range want {
		if g := got.Header.Get(k); g != v {
			t.Errorf("%s upstream = %q, want %q", k, g, v)
		}
	}
	for k := range got.Header {
		if _, ok := want[http.CanonicalHeaderKey(k)]; !ok {
			t.Errorf("header %s = %q went upstream", k, got.Header.Values(k))
		}
	}
	if got.URL.Path != "/v1.0/invoke/message/method/api/v1/rooms" {
		t.Errorf("a dapr-app-id header changed the target: %s", got.URL.Path)
	}
}

func TestWSProxyPresentsTheAppTokenAndDropsClientHeaders(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)
	resp := rawRequest(t, f.gw.URL, "GET", "/ws", map[string]string{
		"Connection":            "Upgrade",
		"Upgrade":               "websocket",
		"Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==",
		"Authorization":         "Bearer " + tok,
		"Dapr-Api-Token":        "client-chosen",
		"dapr-app-id":           "message",
		"Origin":                "http://localhost:8080",
		"Cookie":                "x=1",
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	f.mu.Lock()
	got := f.wsSeen[len(f.wsSeen)-1]
	f.mu.Unlock()
	if g := got.Header.Get("Dapr-Api-Token"); g != testAppToken {
		t.Errorf("dapr-api-token to ws = %q, want the gateway's app token", g)
	}
	if got.Header.Get("Origin") == "" || got.Header.Get("Authorization") == "" {
		t.Errorf("Origin or Authorization did not reach ws")
	}
	if g := got.Header.Get("X-Forwarded-For"); g != "127.0.0.1" {
		t.Errorf("X-Forwarded-For to ws = %q, want the client's address", g)
	}
	for _, h := range []string{"Dapr-App-Id", "Cookie"} {
		if got.Header.Get(h) != "" {
			t.Errorf("%s reached ws", h)
		}
	}
}

// TestSidecarErrorsAreNotPassedOn: an error daprd makes itself names
// internal addresses; the client gets papo's 503 instead. The callee's own
// errors (papo's body) pass unchanged.
func TestSidecarErrorsAreNotPassedOn(t *testing.T) {
	answers := map[string]struct {
		status int
		body   string
	}{
		"/v1.0/invoke/message/method/api/v1/rooms":     {500, `{"errorCode":"ERR_DIRECT_INVOKE","message":"fail to invoke, id: message, err: rpc error: code = Unavailable desc = dial tcp 10.1.2.3:50002: connect: connection refused"}`},
		"/v1.0/invoke/auth/method/api/v1/auth/login":   {500, `{"errorCode":"ERR_DIRECT_INVOKE","message":"circuit breaker is open"}`},
		"/v1.0/invoke/auth/method/api/v1/me":           {403, `{"errorCode":"ERR_DIRECT_INVOKE","message":"access control policy has denied access to id: spiffe://public/ns/papo/gateway"}`},
		"/v1.0/invoke/presence/method/api/v1/presence": {403, `{"error":{"code":"not_a_member","message":"no"}}`},
	}
	f := newFixtureWith(t, &fakeSidecar{answer: func(w http.ResponseWriter, r *http.Request) {
		a := answers[r.URL.Path]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}}, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/api/v1/rooms", 503, "unavailable"},
		{"POST", "/api/v1/auth/login", 503, "unavailable"},
		{"GET", "/api/v1/me", 503, "unavailable"},
		{"GET", "/api/v1/presence", 403, "not_a_member"},
	} {
		resp := f.do(t, c.method, c.path, tok, "")
		b, _ := io.ReadAll(resp.Body)
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("%s: body %q", c.path, b)
		}
		if resp.StatusCode != c.status || eb.Error.Code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.path, resp.StatusCode, eb.Error.Code, c.status, c.code)
		}
		for _, leak := range []string{"10.1.2.3", "127.0.0.1", "circuit", "spiffe", "v1.0", "ERR_"} {
			if strings.Contains(string(b), leak) {
				t.Errorf("%s: the answer %q names %q", c.path, b, leak)
			}
		}
	}
}

func TestClientAddressComesFromForwardingHeadersOnlyViaTrustedProxies(t *testing.T) {
	trustLB, err := parseProxyTrust([]string{"10.0.0.0/8", "192.0.2.7"}, "X-Forwarded-For")
	if err != nil {
		t.Fatal(err)
	}
	trustFwd, err := parseProxyTrust([]string{"10.0.0.0/8"}, "Forwarded")
	if err != nil {
		t.Fatal(err)
	}
	none, _ := parseProxyTrust(nil, "")
	cases := []struct {
		name   string
		trust  proxyTrust
		peer   string
		header map[string]string
		want   string
	}{
		{"no trusted proxy: the peer, whatever the header says", none, "198.51.100.1:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9"}, "198.51.100.1"},
		{"an untrusted peer's header is ignored", trustLB, "198.51.100.1:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9"}, "198.51.100.1"},
		{"a trusted proxy's client", trustLB, "10.1.1.1:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9"},
		{"a single trusted address", trustLB, "192.0.2.7:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9"},
		{"a spoofed entry left of the real client is skipped", trustLB, "10.1.1.1:4000",
			map[string]string{"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies", trustLB, "10.1.1.1:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9, 10.2.2.2, 10.3.3.3"}, "203.0.113.9"},
		{"garbage stops at the last trusted hop", trustLB, "10.1.1.1:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9, nonsense"}, "10.1.1.1"},
		{"a trusted proxy without a header", trustLB, "10.1.1.1:4000", nil, "10.1.1.1"},
		{"ipv6 with a port", trustLB, "10.1.1.1:4000",
			map[string]string{"X-Forwarded-For": "[2001:db8::1]:443"}, "2001:db8::1"},
		{"Forwarded when configured", trustFwd, "10.1.1.1:4000",
			map[string]string{"Forwarded": `for="[2001:db8::2]:4711";proto=https, for=10.9.9.9`}, "2001:db8::2"},
		{"X-Forwarded-For is ignored when Forwarded is configured", trustFwd, "10.1.1.1:4000",
			map[string]string{"X-Forwarded-For": "203.0.113.9"}, "10.1.1.1"},
		{"an obfuscated Forwarded node", trustFwd, "10.1.1.1:4000",
			map[string]string{"Forwarded": "for=_hidden"}, "10.1.1.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://gw/", nil)
			r.RemoteAddr = c.peer
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			if got := c.trust.clientAddr(r); got != netip.MustParseAddr(c.want) {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	if _, err := parseProxyTrust([]string{"not-a-cidr"}, ""); err == nil {
		t.Error("a malformed CIDR was accepted")
	}
	if _, err := parseProxyTrust(nil, "X-Real-IP"); err == nil {
		t.Error("an unsupported forwarding header was accepted")
	}
	if got := rateKey(netip.MustParseAddr("2001:db8::1")); got != rateKey(netip.MustParseAddr("2001:db8::ffff")) {
		t.Errorf("two addresses of one /64 count apart: %s", got)
	}
}

func TestRateLimitCountsForwardedClientsApartOnlyBehindATrustedProxy(t *testing.T) {
	for _, c := range []struct {
		name    string
		trusted []string
		want    int // status of client B's first request after A used the budget
	}{
		{"trusted: each client has its own budget", []string{"127.0.0.1/32"}, http.StatusTeapot},
		{"untrusted: one budget for the peer", nil, http.StatusTooManyRequests},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, func(cfg *Config) { cfg.RatePerIP = 2; cfg.TrustedProxies = c.trusted })
			as := func(client string) int {
				resp := rawRequest(t, f.gw.URL, "POST", "/api/v1/auth/login", map[string]string{"X-Forwarded-For": client})
				return resp.StatusCode
			}
			for range 2 {
				if got := as("203.0.113.1"); got != http.StatusTeapot {
					t.Fatalf("within the limit: %d", got)
				}
			}
			if got := as("203.0.113.1"); got != http.StatusTooManyRequests {
				t.Fatalf("client A over its limit: %d, want 429", got)
			}
			if got := as("203.0.113.2"); got != c.want {
				t.Fatalf("client B: %d, want %d", got, c.want)
			}
			if c.trusted != nil {
				if got := f.sidecar.last(t).Header.Get("X-Forwarded-For"); got != "203.0.113.2" {
					t.Errorf("X-Forwarded-For upstream %q, want the client's address alone", got)
				}
			}
		})
	}
}
