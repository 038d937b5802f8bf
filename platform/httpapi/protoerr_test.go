package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/platform/httpapi"
)

// rawExchange writes req on a fresh connection to addr and reads the
// answer.
func rawExchange(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may answer and close before it reads everything (a 2 MiB
	// header): write from another goroutine and read the answer here.
	go func() { _, _ = io.WriteString(c, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestNetHTTPsOwnRefusalsAreJSON(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := httpapi.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A handler's own plain-text answer, closing the connection, is
		// left alone.
		w.Header().Set("Connection", "close")
		http.Error(w, "handler says no", http.StatusBadRequest)
	}), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := srv.Addr().String()

	cases := []struct {
		name   string
		req    string
		status int
		code   string
	}{
		{"headers over 32 KiB", "GET /api/v1/rooms HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n", 431, "headers_too_large"},
		{"a 2 MB header", "GET /api/v1/rooms HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, "headers_too_large"},
		{"a header line without a colon", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad_request"},
		{"no Host header", "GET / HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"an unknown transfer encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n", 501, "unsupported_transfer_encoding"},
		{"an HTTP version net/http does not speak", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, "unsupported_http_version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := rawExchange(t, addr, c.req)
			b, _ := io.ReadAll(resp.Body)
			var eb httpapi.ErrorBody
			if err := json.Unmarshal(b, &eb); err != nil || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %q (%s), want papo's JSON error body", resp.StatusCode, b, resp.Header.Get("Content-Type"))
			}
			if resp.StatusCode != c.status || eb.Error.Code != c.code {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, eb.Error.Code, c.status, c.code)
			}
		})
	}
	t.Run("a handler's plain-text answer is not rewritten", func(t *testing.T) {
		resp := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || string(b) != "handler says no\n" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
	})
}
