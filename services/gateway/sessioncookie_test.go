package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// authLike answers login and refresh as auth does: a refresh token that
// is "good-N" rotates to "good-N+1"; anything else is 401.
func authLike(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &in)
	next := "good-1"
	if strings.HasSuffix(r.URL.Path, "/auth/refresh") {
		if !strings.HasPrefix(in.RefreshToken, "good-") {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"invalid_refresh_token","message":"no"}}`)
			return
		}
		next = in.RefreshToken + "+1"
	}
	if strings.HasSuffix(r.URL.Path, "/auth/logout") {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	_, _ = io.WriteString(w, `{"access_token":"acc","refresh_token":"`+next+`","token_type":"Bearer","expires_in":900,"user":{"id":"u1"}}`)
}

func cookieReq(t *testing.T, f *fixture, path, body, cookie, origin string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.gw.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SessionModeHeader, "cookie")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: RefreshCookie, Value: cookie})
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func refreshCookieOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == RefreshCookie {
			return c
		}
	}
	return nil
}

func TestSessionCookieCarriesTheRefreshTokenForBrowsers(t *testing.T) {
	f := newFixtureWith(t, &fakeSidecar{answer: authLike}, func(c *Config) { c.SessionCookieMaxAge = 720 * time.Hour })

	// Login in cookie mode: the token is in an HttpOnly, Secure,
	// SameSite=Strict cookie scoped to the refresh path, not in the body.
	resp := cookieReq(t, f, "/api/v1/auth/login", `{"username":"ana","password":"12345678"}`, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	c := refreshCookieOf(t, resp)
	if c == nil || c.Value != "good-1" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode ||
		c.Path != RefreshCookiePath || c.MaxAge != int((720*time.Hour)/time.Second) {
		t.Fatalf("login cookie %+v; want good-1, HttpOnly, Secure, SameSite=Strict, Path %s, Max-Age 30 days", c, RefreshCookiePath)
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if _, has := body["refresh_token"]; has || body["access_token"] != "acc" {
		t.Fatalf("login body %v; want the access token and no refresh token", body)
	}

	// Refresh with an empty body: the cookie's token goes to auth, the
	// rotated one comes back in the cookie.
	resp = cookieReq(t, f, "/api/v1/auth/refresh", `{}`, "good-1", f.gw.URL)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("refresh: %d %s", resp.StatusCode, b)
	}
	f.sidecar.mu.Lock()
	got := f.sidecar.body[len(f.sidecar.body)-1]
	f.sidecar.mu.Unlock()
	if !strings.Contains(got, `"refresh_token":"good-1"`) {
		t.Fatalf("auth was sent %s; want the cookie's token", got)
	}
	if c := refreshCookieOf(t, resp); c == nil || c.Value != "good-1+1" {
		t.Fatalf("refresh cookie %+v; want the rotated token", c)
	}

	// No cookie: 401 no_session, and auth is not asked.
	n := f.sidecar.count()
	resp = cookieReq(t, f, "/api/v1/auth/refresh", ``, "", "")
	if resp.StatusCode != http.StatusUnauthorized || errorCode(t, resp) != "no_session" || f.sidecar.count() != n {
		t.Fatalf("refresh without a cookie: %d; want 401 no_session before auth", resp.StatusCode)
	}

	// A refused refresh clears the cookie.
	resp = cookieReq(t, f, "/api/v1/auth/refresh", `{}`, "stolen", "")
	if c := refreshCookieOf(t, resp); resp.StatusCode != http.StatusUnauthorized || c == nil || c.MaxAge >= 0 {
		t.Fatalf("refused refresh: %d cookie %+v; want 401 and the cookie cleared", resp.StatusCode, c)
	}

	// CSRF: another origin is refused before auth, even with the header.
	n = f.sidecar.count()
	resp = cookieReq(t, f, "/api/v1/auth/refresh", `{}`, "good-1", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden || errorCode(t, resp) != "origin_not_allowed" || f.sidecar.count() != n {
		t.Fatalf("cross-origin refresh: %d; want 403 origin_not_allowed before auth", resp.StatusCode)
	}

	// Logout clears the cookie.
	req, _ := http.NewRequest(http.MethodPost, f.gw.URL+"/api/v1/auth/logout", nil)
	req.Header.Set("Authorization", "Bearer "+f.iss.Token("u1", "s1", time.Minute))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if c := refreshCookieOf(t, resp); c == nil || c.MaxAge >= 0 || c.Path != RefreshCookiePath {
		t.Fatalf("logout cookie %+v; want it cleared on the refresh path", c)
	}
}

// Without the header the contract is docs/api.md's: the token stays in
// the body, no cookie is set, and a cookie alone refreshes nothing.
func TestSessionCookieIsOptIn(t *testing.T) {
	f := newFixtureWith(t, &fakeSidecar{answer: authLike}, func(c *Config) { c.SessionCookieMaxAge = time.Hour })
	resp := f.do(t, http.MethodPost, "/api/v1/auth/login", "", `{"username":"ana","password":"12345678"}`)
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body["refresh_token"] != "good-1" || refreshCookieOf(t, resp) != nil {
		t.Fatalf("plain login: body %v cookies %v; want the token in the body and no cookie", body, resp.Cookies())
	}
	req, _ := http.NewRequest(http.MethodPost, f.gw.URL+"/api/v1/auth/refresh", strings.NewReader(`{}`))
	req.AddCookie(&http.Cookie{Name: RefreshCookie, Value: "good-1"})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh with a cookie but no header: %d; want auth's 401 (the cookie is ignored)", resp.StatusCode)
	}
}

func TestSessionCookieMaxAgeIsChecked(t *testing.T) {
	cfg := Config{WSUpstreams: []string{"http://127.0.0.1:1"}, WSHealthInterval: time.Second, StatusInterval: time.Second,
		RatePerIP: 1, RatePerUser: 1, MaxBody: 1, SessionCookieMaxAge: time.Second}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "GATEWAY_SESSION_COOKIE_MAX_AGE") {
		t.Fatalf("Validate with a 1s cookie: %v; want a GATEWAY_SESSION_COOKIE_MAX_AGE error", err)
	}
}

// On plain http from a host that is not loopback, browsers drop Secure
// cookies: the header is ignored and the token stays in the body.
func TestSessionCookieOnlyWhereBrowsersKeepIt(t *testing.T) {
	f := newFixtureWith(t, &fakeSidecar{answer: authLike}, func(c *Config) { c.SessionCookieMaxAge = time.Hour })
	for _, tc := range []struct {
		host, proto string
		cookie      bool
	}{
		{"chat.example.org", "", false},
		{"192.168.1.20:8080", "", false},
		{"chat.example.org", "https", true},
		{"localhost:8080", "", true},
		{"[::1]:8080", "", true},
	} {
		req, _ := http.NewRequest(http.MethodPost, f.gw.URL+"/api/v1/auth/login", strings.NewReader(`{"username":"ana","password":"12345678"}`))
		req.Host = tc.host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SessionModeHeader, "cookie")
		if tc.proto != "" {
			req.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		_, inBody := body["refresh_token"]
		if got := refreshCookieOf(t, resp) != nil; got != tc.cookie || inBody == tc.cookie {
			t.Errorf("host %s proto %q: cookie %v, token in body %v; want cookie %v", tc.host, tc.proto, got, inBody, tc.cookie)
		}
	}
}
