package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
)

// The browser session cookie (docs/web.md, "Tokens"). A client that sends
// SessionModeHeader: cookie on login and refresh gets its refresh token in
// an HttpOnly cookie, which no script can read, instead of in the JSON
// body; its refresh then needs no token in the body. Other clients see
// the contract of docs/api.md unchanged: the header is an addition.
const (
	// SessionModeHeader opts a login or refresh into the cookie. It is not
	// among the CORS allowed headers, so another origin cannot send it
	// without a preflight that fails: with SameSite=Strict and the Origin
	// check, that is the CSRF protection of the refresh route.
	SessionModeHeader = "X-Papo-Session"
	sessionModeCookie = "cookie"
	// RefreshCookie is the cookie's name; its Path is RefreshCookiePath
	// alone, so it travels with no other request.
	RefreshCookie     = "papo_refresh"
	RefreshCookiePath = "/api/v1/auth/refresh"
	// maxTokenAnswer bounds the login/refresh answers read here (a few
	// hundred bytes in practice).
	maxTokenAnswer = 64 << 10
)

// sessionCookies sets, reads and clears the refresh cookie around auth's
// login, refresh and logout.
type sessionCookies struct {
	maxAge time.Duration // the cookie's lifetime: auth's SESSION_TTL
	log    *slog.Logger
}

// wantsCookie: the client asked for the cookie, and the browser will keep
// it. A Secure cookie is dropped by browsers on plain http other than
// loopback; there the answer keeps the token in the body, as without the
// header, and the client stores it itself (docs/web.md).
func wantsCookie(r *http.Request) bool {
	return r.Header.Get(SessionModeHeader) == sessionModeCookie && secureContext(r)
}

// secureContext reports whether the page was loaded over https (here or
// at a proxy in front) or from a loopback host, where browsers keep
// Secure cookies.
func secureContext(r *http.Request) bool {
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// sameOrigin reports whether r's Origin, when it has one, is the host it
// was sent to. Browsers send Origin on every POST from a page.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s sessionCookies) set(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: RefreshCookie, Value: token, Path: RefreshCookiePath,
		MaxAge: int(s.maxAge / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func (s sessionCookies) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: RefreshCookie, Value: "", Path: RefreshCookiePath,
		MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

// inCookieMode serves next unchanged unless r asks for a cookie session;
// such a request from another origin is refused, and the others are
// handled by h.
func (s sessionCookies) inCookieMode(next http.Handler, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !wantsCookie(r) {
			next.ServeHTTP(w, r)
			return
		}
		if !sameOrigin(r) {
			httpapi.Error(w, r, s.log, apierror.New(apierror.Forbidden, "origin_not_allowed", "a cookie session is for the page's own origin"))
			return
		}
		h(w, r)
	})
}

// login wraps auth's login: in cookie mode, the refresh token of a 200
// answer moves from the body into the cookie.
func (s sessionCookies) login(next http.Handler) http.Handler {
	return s.inCookieMode(next, func(w http.ResponseWriter, r *http.Request) {
		s.intoCookie(w, r, next)
	})
}

// refresh wraps auth's refresh: in cookie mode, a body without a
// refresh_token is given the cookie's, and the answer is handled as
// login's; a refused refresh clears the cookie.
func (s sessionCookies) refresh(next http.Handler, maxBody int64) http.Handler {
	return s.inCookieMode(next, func(w http.ResponseWriter, r *http.Request) {
		var body api.RefreshRequest
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			httpapi.Error(w, r, s.log, apierror.New(apierror.TooLarge, "body_too_large", "request body is over %d bytes", maxBody))
			return
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				httpapi.Error(w, r, s.log, apierror.Invalidf("invalid_json", "the body is not a JSON object: %v", err))
				return
			}
		}
		if body.RefreshToken == "" {
			c, err := r.Cookie(RefreshCookie)
			if err != nil || c.Value == "" {
				httpapi.Error(w, r, s.log, apierror.New(apierror.Unauthenticated, "no_session", "no session cookie: log in"))
				return
			}
			body.RefreshToken = c.Value
		}
		fwd, _ := json.Marshal(body)
		r.Body = io.NopCloser(bytes.NewReader(fwd))
		r.ContentLength = int64(len(fwd))
		r.Header.Set("Content-Length", strconv.Itoa(len(fwd)))
		r.Header.Set("Content-Type", "application/json")
		s.intoCookie(w, r, next)
	})
}

// logout wraps auth's logout: the cookie goes whatever the answer (the
// session is over for this browser either way).
func (s sessionCookies) logout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.clear(w)
		next.ServeHTTP(w, r)
	})
}

// intoCookie serves r with next, buffered: a 200 token answer has its
// refresh token moved into the cookie; a 401 clears the cookie; anything
// else passes on as it is.
func (s sessionCookies) intoCookie(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := &bufferedAnswer{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, r)
	if rec.overflow {
		s.log.WarnContext(r.Context(), "token answer over its bound", "bytes", maxTokenAnswer, "path", r.URL.Path)
		httpapi.Error(w, r, s.log, apierror.New(apierror.Unavailable, "unavailable", "the auth service is unavailable"))
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	body := rec.body.Bytes()
	switch {
	case rec.status == http.StatusOK:
		var tok map[string]json.RawMessage
		var refresh string
		if json.Unmarshal(body, &tok) == nil && json.Unmarshal(tok["refresh_token"], &refresh) == nil && refresh != "" {
			s.set(w, refresh)
			delete(tok, "refresh_token")
			body, _ = json.Marshal(tok)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Header().Set("Cache-Control", "no-store")
		}
	case rec.status == http.StatusUnauthorized:
		s.clear(w)
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(body)
}

// bufferedAnswer is a ResponseWriter that keeps the answer in memory, up
// to maxTokenAnswer bytes.
type bufferedAnswer struct {
	header   http.Header
	status   int
	wrote    bool
	body     bytes.Buffer
	overflow bool
}

func (b *bufferedAnswer) Header() http.Header { return b.header }

func (b *bufferedAnswer) WriteHeader(status int) {
	if !b.wrote {
		b.status, b.wrote = status, true
	}
}

func (b *bufferedAnswer) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	if room := maxTokenAnswer - b.body.Len(); len(p) > room {
		b.overflow = true
		b.body.Write(p[:room])
		return len(p), nil
	}
	return b.body.Write(p)
}
