package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
)

func decode(body string, limit int64) error {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	w := httptest.NewRecorder()
	var v map[string]any
	return httpapi.Decode(w, r, limit, &v)
}

func TestDecodeLimitsAndErrors(t *testing.T) {
	cases := []struct {
		name, body string
		limit      int64
		wantKind   apierror.Kind
		wantCode   string
	}{
		{"valid", `{"a":1}`, 100, -1, ""},
		{"exactly at the limit", `{"a":"` + strings.Repeat("x", 92) + `"}`, 100, -1, ""},
		{"one byte over the limit", `{"a":"` + strings.Repeat("x", 93) + `"}`, 100, apierror.TooLarge, "body_too_large"},
		{"empty", ``, 100, apierror.Invalid, "invalid_json"},
		{"malformed", `{"a":`, 100, apierror.Invalid, "invalid_json"},
		{"two values", `{"a":1}{"b":2}`, 100, apierror.Invalid, "invalid_json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decode(c.body, c.limit)
			if c.wantKind == -1 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			e, ok := apierror.As(err)
			if !ok || e.Kind != c.wantKind || e.Code != c.wantCode {
				t.Fatalf("got %v, want kind %d code %s", err, c.wantKind, c.wantCode)
			}
		})
	}
}

func TestErrorMapsKindsToStatusAndHidesInternalErrors(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{apierror.Invalidf("bad", "bad input"), 400, "bad", ""},
		{apierror.New(apierror.Unauthenticated, "invalid_token", "no"), 401, "invalid_token", ""},
		{apierror.New(apierror.Forbidden, "not_a_member", "no"), 403, "not_a_member", ""},
		{apierror.New(apierror.NotFound, "not_found", "no"), 404, "not_found", ""},
		{apierror.New(apierror.Conflict, "username_taken", "no"), 409, "username_taken", ""},
		{apierror.New(apierror.TooLarge, "body_too_large", "no"), 413, "body_too_large", ""},
		{&apierror.Error{Kind: apierror.RateLimited, Code: "rate_limited", RetryAfter: 1500 * time.Millisecond}, 429, "rate_limited", "2"},
		{apierror.New(apierror.Unavailable, "unavailable", "no"), 503, "unavailable", "1"},
		{&apierror.Error{Kind: apierror.Unavailable, Code: "keys_unavailable", RetryAfter: 5 * time.Second}, 503, "keys_unavailable", "5"},
		{errors.New("database password is hunter2"), 500, "internal", ""},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		httpapi.Error(w, httptest.NewRequest("GET", "/", nil), log, c.err)
		if w.Code != c.status {
			t.Errorf("%v: status %d, want %d", c.err, w.Code, c.status)
		}
		var body httpapi.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != c.code {
			t.Errorf("%v: body %q", c.err, w.Body.String())
		}
		if got := w.Header().Get("Retry-After"); got != c.retryAfter {
			t.Errorf("%v: Retry-After %q, want %q", c.err, got, c.retryAfter)
		}
		if strings.Contains(w.Body.String(), "hunter2") {
			t.Errorf("an internal error leaked to the client: %s", w.Body.String())
		}
	}
	if !strings.Contains(logged.String(), "hunter2") {
		t.Error("the internal error was not logged")
	}
}

func TestRequestIDsKeepsAWellFormedIDAndReplacesOthers(t *testing.T) {
	var seen string
	h := httpapi.RequestIDs(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = httpapi.RequestID(r.Context())
	}))
	for _, c := range []struct {
		in       string
		keep     bool
		describe string
	}{
		{"abc-123_X.y", true, "plain id"},
		{"", false, "missing"},
		{"evil\nline", false, "control characters"},
		{strings.Repeat("a", 65), false, "too long"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.in != "" {
			r.Header[httpapi.RequestIDHeader] = []string{c.in}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if c.keep && seen != c.in {
			t.Errorf("%s: id %q replaced by %q", c.describe, c.in, seen)
		}
		if !c.keep && (seen == c.in || seen == "") {
			t.Errorf("%s: id %q kept or empty (%q)", c.describe, c.in, seen)
		}
		if w.Header().Get(httpapi.RequestIDHeader) != seen {
			t.Errorf("%s: response id %q, context id %q", c.describe, w.Header().Get(httpapi.RequestIDHeader), seen)
		}
	}
}

func TestAccessLogNeverLogsTheQueryOrHeaders(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	h := httpapi.AccessLog(log)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "ok")
	}))
	r := httptest.NewRequest("GET", "/api/v1/x?token=secret-in-query", nil)
	r.Header.Set("Authorization", "Bearer secret-in-header")
	h.ServeHTTP(httptest.NewRecorder(), r)
	out := logged.String()
	if strings.Contains(out, "secret") {
		t.Fatalf("access log leaks a secret: %s", out)
	}
	if !strings.Contains(out, `"status":418`) || !strings.Contains(out, `"path":"/api/v1/x"`) {
		t.Fatalf("access log lacks status or path: %s", out)
	}
}

func TestRecoverAnswers500(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := httpapi.Recover(log)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", w.Code)
	}
}

// TestEncodeSendsAContentLength: a JSON answer larger than net/http's
// chunking buffer still carries its length (so no proxy has to stream it
// chunk by chunk), and a value that cannot be encoded is a JSON 500, not a
// half-written body.
func TestEncodeSendsAContentLength(t *testing.T) {
	big := map[string]string{"text": strings.Repeat("x", 20000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			httpapi.Encode(w, http.StatusOK, map[string]any{"f": func() {}})
			return
		}
		httpapi.Encode(w, http.StatusCreated, big)
	}))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Fatalf("status %d, Content-Length %d for %d bytes, transfer encoding %v", resp.StatusCode, resp.ContentLength, len(body), resp.TransferEncoding)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil || got["text"] != big["text"] {
		t.Fatalf("body does not decode back: %v", err)
	}

	resp, err = http.Get(srv.URL + "/bad")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var eb httpapi.ErrorBody
	if resp.StatusCode != http.StatusInternalServerError || json.Unmarshal(body, &eb) != nil || eb.Error.Code != "internal" {
		t.Fatalf("an unencodable answer: %d %s", resp.StatusCode, body)
	}
}

func TestServeAlsoServesAnotherListenerAndShutsItDown(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	srv, err := httpapi.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), log)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeAlso(extra)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, time.Second) }()

	resp, err := http.Get("http://" + extra.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("extra listener answered %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.Dial("tcp", extra.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the extra listener still accepts after shutdown")
	}
}
