package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
)

// TestEveryAPIAnswerIsPapoJSON: whatever goes wrong under /api, the client
// reads papo's error body with a documented code; nothing of a sidecar's
// and no web page.
func TestEveryAPIAnswerIsPapoJSON(t *testing.T) {
	answers := map[string]struct {
		status int
		header http.Header
		body   string
	}{
		"/v1.0/invoke/message/method/api/v1/rooms":        {500, nil, `{"error":{"code":"internal","message":"internal error"}}`},
		"/v1.0/invoke/message/method/api/v1/dms":          {502, nil, `bad gateway`},
		"/v1.0/invoke/auth/method/api/v1/me":              {503, nil, `{"error":{"code":"keys_unavailable","message":"later"}}`},
		"/v1.0/invoke/presence/method/api/v1/presence":    {503, http.Header{"Retry-After": {"7"}}, `{"error":{"code":"unavailable","message":"later"}}`},
		"/v1.0/invoke/notification/method/api/v1/devices": {200, http.Header{"X-Request-Id": {"from-the-service"}}, `{"devices":[]}`},
	}
	f := newFixtureWith(t, &fakeSidecar{answer: func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			t.Errorf("unexpected call %s %s", r.Method, r.URL.Path)
			return
		}
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}}, nil)
	tok := f.iss.Token("u1", "s1", time.Minute)

	cases := []struct {
		name, method, path, token string
		status                    int
		code, retryAfter, allow   string
	}{
		{"another API version", "GET", "/api/v2/rooms", tok, 404, "not_found", "", ""},
		{"/api itself", "GET", "/api", "", 404, "not_found", "", ""},
		{"a path under /api but no version", "GET", "/api/rooms", "", 404, "not_found", "", ""},
		{"an unknown route", "GET", "/api/v1/nope", tok, 404, "not_found", "", ""},
		{"an unknown method", "FOO", "/api/v1/rooms", tok, 405, "method_not_allowed", "", ""},
		{"an unknown method outside /api", "FOO", "/", "", 405, "method_not_allowed", "", ""},
		{"GET on login", "GET", "/api/v1/auth/login", "", 405, "method_not_allowed", "", "POST"},
		{"DELETE on register", "DELETE", "/api/v1/auth/register", tok, 405, "method_not_allowed", "", "POST"},
		{"PUT on refresh", "PUT", "/api/v1/auth/refresh", "", 405, "method_not_allowed", "", "POST"},
		{"POST on jwks", "POST", "/api/v1/auth/jwks", "", 405, "method_not_allowed", "", "GET"},
		{"POST on healthz", "POST", "/healthz", "", 405, "method_not_allowed", "", ""},
		{"a service's 500", "GET", "/api/v1/rooms", tok, 503, "unavailable", "1", ""},
		{"a 502 in no shape of papo's", "POST", "/api/v1/dms", tok, 503, "unavailable", "1", ""},
		{"a service's own 503 keeps its code and gets Retry-After", "GET", "/api/v1/me", tok, 503, "keys_unavailable", "1", ""},
		{"a service's Retry-After is kept", "GET", "/api/v1/presence", tok, 503, "unavailable", "7", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := f.do(t, c.method, c.path, c.token, "")
			b, _ := io.ReadAll(resp.Body)
			var eb struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(b, &eb); err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("got %d %q (%s), want papo's JSON error body", resp.StatusCode, b, resp.Header.Get("Content-Type"))
			}
			if resp.StatusCode != c.status || eb.Error.Code != c.code {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, eb.Error.Code, c.status, c.code)
			}
			if got := resp.Header.Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if got := resp.Header.Get("Allow"); got != c.allow {
				t.Errorf("Allow %q, want %q", got, c.allow)
			}
			if strings.Contains(string(b), "bad gateway") {
				t.Errorf("the upstream's body passed through: %q", b)
			}
		})
	}
	t.Run("one request id, the gateway's", func(t *testing.T) {
		resp := f.do(t, "GET", "/api/v1/devices", tok, "")
		if ids := resp.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] == "from-the-service" {
			t.Fatalf("X-Request-Id %q, want the gateway's alone", ids)
		}
	})
}

// TestStatusAndReadinessSayWhichServicesAreUp: a service whose /readyz
// fails shows as down in GET /api/v1/status and fails the gateway's
// /readyz (which names it), within a few checks, and comes back as up.
func TestStatusAndReadinessSayWhichServicesAreUp(t *testing.T) {
	sc := &fakeSidecar{}
	f := newFixtureWith(t, sc, nil)
	status := func() api.ServiceStatus {
		t.Helper()
		resp := f.do(t, "GET", "/api/v1/status", "", "")
		var s api.ServiceStatus
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status: %d %v", resp.StatusCode, err)
		}
		return s
	}
	readyz := func(query string) (int, string) {
		resp := f.do(t, "GET", "/readyz"+query, "", "")
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitFor("every service up", func() bool { return status().Status == "ok" })
	if st, body := readyz(""); st != 200 {
		t.Fatalf("/readyz %d %s with every service up", st, body)
	}
	want := map[string]string{"gateway": "up", "auth": "up", "message": "up", "presence": "up", "notification": "up", "ws": "up"}
	if got := status().Services; !mapsEqual(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	sc.down.Store("message", true)
	waitFor("message down", func() bool { return status().Services["message"] == "down" })
	if s := status(); s.Status != "degraded" || s.Services["auth"] != "up" {
		t.Fatalf("status %+v, want degraded with auth up", s)
	}
	st, body := readyz("")
	if st != 503 || !strings.Contains(body, `"message":"unavailable"`) {
		t.Fatalf("/readyz %d %s, want 503 naming message", st, body)
	}
	for _, leak := range []string{"127.0.0.1", "v1.0", "invoke"} {
		if strings.Contains(body, leak) {
			t.Errorf("/readyz names %q: %s", leak, body)
		}
	}
	if st, body := readyz("?scope=gateway"); st != 200 {
		t.Fatalf("/readyz?scope=gateway %d %s, want 200 (its own sidecar is up)", st, body)
	}

	sc.down.Delete("message")
	waitFor("message up again", func() bool { return status().Status == "ok" })
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
