package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/handoff"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
	"github.com/papochat/papo/services/ws/internal/hub"
)

// fakeSidecar answers the Dapr HTTP API routes run uses without a real
// daprd: the auth JWKS and session check, and the message user rooms.
func fakeSidecar(t *testing.T, iss *authntest.Issuer) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/invoke/auth/method"+authn.JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		httpapi.Encode(w, http.StatusOK, iss.JWKS())
	})
	mux.HandleFunc("GET /v1.0/invoke/auth/method/internal/v1/sessions/{sid}", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Encode(w, http.StatusOK, map[string]any{"active": true})
	})
	mux.HandleFunc("GET /v1.0/invoke/message/method/internal/v1/users/{uid}/rooms", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Encode(w, http.StatusOK, map[string]any{"rooms": []api.RoomCursor{{RoomID: "r1", LastSeq: 3}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Port()
}

// unusedPort returns a port nothing listens on (the sidecar's gRPC API is
// absent in this test; the subscriptions keep retrying).
func unusedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// startRun runs the service with env added to a test environment and
// returns its base URL, a cancel that stops it like SIGTERM, and the
// channel run's result arrives on.
func startRun(t *testing.T, iss *authntest.Issuer, env map[string]string) (base string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	vars := map[string]string{
		"APP_HOST":           "127.0.0.1",
		"APP_PORT":           "0",
		"DAPR_HTTP_PORT":     fakeSidecar(t, iss),
		"DAPR_GRPC_PORT":     unusedPort(t),
		"AUTH_ISSUER":        iss.Config.Issuer,
		"AUTH_AUDIENCE":      iss.Config.Audience,
		"WS_ALLOWED_ORIGINS": "http://localhost:8080",
		"WS_SHUTDOWN_GRACE":  "5s",
		// No metrics listener: the default port would be shared by tests
		// running in parallel.
		"METRICS_ADDR": "",
	}
	maps.Copy(vars, env)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	result := make(chan error, 1)
	go func() { result <- run(ctx, servicetest.Env(vars), pw); pw.Close() }()

	// The listening URL is in the log.
	lines := bufio.NewScanner(pr)
	for base == "" && lines.Scan() {
		var l struct{ Msg, URL string }
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "ws listening" {
			base = l.URL
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" {
		t.Fatal("no listening line logged")
	}
	return base, cancel, result
}

// closeCode reads w until it closes and returns the close code.
func closeCode(t *testing.T, w *client.WS) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, err := w.ReadRaw(ctx); err != nil {
			return client.CloseCode(err)
		}
	}
}

func waitRun(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within the drain time")
	}
}

func TestRunServesHealthAndClosesSocketsWithGoingAwayOnShutdown(t *testing.T) {
	t.Parallel()
	iss := authntest.New()
	base, cancel, done := startRun(t, iss, nil)
	ctx := context.Background()

	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("readyz without a sidecar: %v %v, want 503", resp, err)
	}
	if got := servicetest.StatusWith(t, "GET", base+"/ws", servicetest.WithAppToken()); got != 400 {
		t.Fatalf("plain GET /ws: %d, want 400", got)
	}
	// /ws is the replica's public route (an ingress may send it here):
	// its guard is the user's access token, not the app API token.
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	tok := iss.Token("alice", "s1", time.Hour)
	if _, err := client.DialWS(ctx, wsURL, "", &client.WSOptions{Origin: "http://localhost:8080"}); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("dial without an access token: %v, want 401", err)
	}
	w, err := client.DialWS(ctx, wsURL, tok, &client.WSOptions{Origin: "http://localhost:8080"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if len(w.Hello.Rooms) != 1 || w.Hello.Rooms[0].LastSeq != 3 {
		t.Fatalf("got hello %+v", w.Hello)
	}

	cancel() // SIGTERM
	if code := closeCode(t, w); code != websocket.CloseGoingAway {
		t.Fatalf("got close %d, want 1001", code)
	}
	waitRun(t, done)
}

// TestRunServesConnectionsHandedOffByTheGateway: a connection handed over
// the WS_HANDOFF_SOCKET is served like one accepted directly — the app
// API token and the handshake's checks answer before any upgrade, the
// hello follows an upgrade, shutdown closes it with 1001 — and the socket
// file goes away with the service.
func TestRunServesConnectionsHandedOffByTheGateway(t *testing.T) {
	t.Parallel()
	iss := authntest.New()
	dir, err := os.MkdirTemp("", "ws-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "handoff", "ws.sock")
	_, cancel, done := startRun(t, iss, map[string]string{"WS_HANDOFF_SOCKET": sock})
	gw := handingGateway(t, sock)
	url := "ws://" + gw + "/ws"
	ctx := context.Background()

	// A handed-off handshake meets the replica's own checks: no access
	// token, 401; a foreign origin, 403.
	if _, err := client.DialWS(ctx, url, "", &client.WSOptions{Origin: "http://localhost:8080"}); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("hand-off without an access token: %v, want 401", err)
	}
	_, err = client.DialWS(ctx, url, iss.Token("alice", "s1", time.Hour), &client.WSOptions{Origin: "https://evil.example", Header: servicetest.WithAppToken()})
	var refused *client.Error
	if !errors.As(err, &refused) || refused.Status != http.StatusForbidden || refused.Code != "origin_not_allowed" {
		t.Fatalf("foreign origin through the hand-off: %v, want 403 origin_not_allowed", err)
	}
	w, err := client.DialWS(ctx, url, iss.Token("alice", "s1", time.Hour), &client.WSOptions{Origin: "http://localhost:8080", Header: servicetest.WithAppToken()})
	if err != nil {
		t.Fatalf("dial through the hand-off: %v", err)
	}
	if w.Hello.UserID != "alice" {
		t.Fatalf("got hello %+v", w.Hello)
	}

	cancel() // SIGTERM
	if code := closeCode(t, w); code != websocket.CloseGoingAway {
		t.Fatalf("got close %d, want 1001", code)
	}
	waitRun(t, done)
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after shutdown: %v, want it removed", err)
	}
}

// handingGateway accepts TCP connections, reads each one's request head
// and hands the connection with it to the ws service at sock, as the
// gateway does. It returns its address.
func handingGateway(t *testing.T, sock string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := handoff.NewSender(sock, nil)
	t.Cleanup(func() { s.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var head []byte
			b := make([]byte, 1)
			for !strings.HasSuffix(string(head), "\r\n\r\n") {
				if _, err := c.Read(b); err != nil {
					break
				}
				head = append(head, b[0])
			}
			if err := s.Send(c.(*net.TCPConn), head); err != nil {
				t.Errorf("hand off: %v", err)
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestLoadConfigRefusesBadValues(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"APP_PORT": "http"},
		{"WS_QUEUE_BYTES": "-1"},
		{"WS_WRITE_TIMEOUT": "soon"},
		{"WS_RATE": "0"},
		{"LOG_LEVEL": "loud"},
		{"WS_PRESENCE_HEARTBEAT": "0s"},
		{"WS_GC_PERCENT": "-5"},
		{"WS_HANDOFF_SOCKET": "/tmp/" + strings.Repeat("x", 100) + ".sock"},
		{"WS_SUBMIT_INFLIGHT": "-1"},
	} {
		t.Run(fmt.Sprint(env), func(t *testing.T) {
			t.Parallel()
			if _, err := service.Load(servicetest.Env(env), defaults()); err == nil {
				t.Errorf("%v accepted", env)
			}
		})
	}
	cfg, err := service.Load(servicetest.Env(map[string]string{
		"WS_ALLOWED_ORIGINS": "http://a.example, http://b.example", "WS_MAX_CONNS_PER_USER": "3",
	}), defaults())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GCPercent != 50 || cfg.Hub.SubmitInflight != 2 {
		t.Fatalf("GC percent %d, submit inflight %d; want the defaults 50 and 2", cfg.GCPercent, cfg.Hub.SubmitInflight)
	}
	if len(cfg.Hub.AllowedOrigins) != 2 || cfg.Hub.MaxConnsPerUser != 3 || cfg.Hub.QueueBytes != 1<<20 {
		t.Fatalf("got %+v", cfg.Hub)
	}
	// Origins are trimmed, and unset limits keep the hub's defaults.
	if cfg.Hub.AllowedOrigins[1] != "http://b.example" {
		t.Fatalf("second origin %q, want it trimmed", cfg.Hub.AllowedOrigins[1])
	}
	want := hub.DefaultConfig()
	want.AllowedOrigins, want.MaxConnsPerUser = cfg.Hub.AllowedOrigins, 3
	want.Replica = cfg.Replica // the host name
	if !reflect.DeepEqual(cfg.Hub, want) {
		t.Fatalf("hub config\n got %+v\nwant %+v", cfg.Hub, want)
	}
}

// isStatus reports whether err is a papo error answer with status.
func isStatus(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}
