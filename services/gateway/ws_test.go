package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/handoff"
	"github.com/papochat/papo/platform/httpapi"
)

// replica plays a ws replica: it upgrades GET /ws (papo.v1), sends
// "hello <name>", echoes text frames, and closes with 4001 when told
// "close-4001". It records what each upgrade request looked like.
type replica struct {
	name string
	url  string

	mu       sync.Mutex
	requests []*http.Request
	closes   []int // close codes the clients sent
}

func (rp *replica) handler() http.Handler {
	up := websocket.Upgrader{Subprotocols: []string{api.Subprotocol}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		rp.mu.Lock()
		rp.requests = append(rp.requests, r.Clone(context.Background()))
		rp.mu.Unlock()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello "+rp.name))
		for {
			_, b, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				rp.mu.Lock()
				rp.closes = append(rp.closes, ce.Code)
				rp.mu.Unlock()
				return
			}
			if err != nil {
				return
			}
			if string(b) == "close-4001" {
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"), time.Now().Add(time.Second))
				_, _, _ = c.ReadMessage() // the client's echo of the close
				return
			}
			_ = c.WriteMessage(websocket.TextMessage, append([]byte("echo "), b...))
		}
	})
}

func (rp *replica) last(t *testing.T) *http.Request {
	t.Helper()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if len(rp.requests) == 0 {
		t.Fatalf("nothing reached %s", rp.name)
	}
	return rp.requests[len(rp.requests)-1]
}

func (rp *replica) count() int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return len(rp.requests)
}

// newReplica serves a replica over TCP.
func newReplica(t *testing.T, name string) (*replica, *httptest.Server) {
	t.Helper()
	rp := &replica{name: name}
	srv := httptest.NewServer(rp.handler())
	t.Cleanup(srv.Close)
	rp.url = srv.URL
	return rp, srv
}

// newHandoffReplica serves a replica over TCP and on a hand-off socket.
func newHandoffReplica(t *testing.T, name string) (rp *replica, sock string, ln *handoff.Listener) {
	t.Helper()
	rp, srv := newReplica(t, name)
	dir, err := os.MkdirTemp("", "gw-handoff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, name+".sock")
	ln, err = handoff.Listen(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Config.Handler}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); ln.Close() })
	return rp, sock, ln
}

// newProxy serves a wsProxy over upstreams (and hand-off sockets).
func newProxy(t *testing.T, iss *authntest.Issuer, upstreams, sockets []string, interval time.Duration) (*wsProxy, *httptest.Server) {
	t.Helper()
	p, err := newWSProxy(t.Context(), upstreams, sockets, true, interval, testAppToken, iss.Verifier(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The client's address as the gateway's router finds it (no trusted
	// proxy).
	srv := httptest.NewServer(withClientAddrs(proxyTrust{})(p))
	t.Cleanup(srv.Close)
	return p, srv
}

// dial opens a WebSocket through the proxy the browser way and reads the
// replica's hello.
func dial(t *testing.T, gw *httptest.Server, token string) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{api.Subprotocol, api.BearerProtocolPref + token}, HandshakeTimeout: 5 * time.Second}
	if gw.TLS != nil {
		d.TLSClientConfig = gw.Client().Transport.(*http.Transport).TLSClientConfig
	}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(gw.URL, "http")+"/ws", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial through the gateway: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	if c.Subprotocol() != api.Subprotocol {
		t.Errorf("subprotocol %q, want %q", c.Subprotocol(), api.Subprotocol)
	}
	return c, read(t, c)
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// exchange sends a frame and expects its echo.
func exchange(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "echo "+text {
		t.Fatalf("got %q, want the echo of %q", got, text)
	}
}

// closedWith reads until the connection ends and returns the close code.
func closedWith(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *wsProxy) relayed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.relays)
}

func TestWSRefusesBeforeTheUpgrade(t *testing.T) {
	iss := authntest.New()
	rp, _ := newReplica(t, "a")
	_, gw := newProxy(t, iss, []string{rp.url}, nil, time.Minute)
	upgrade := func(req *http.Request) {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	}
	cases := []struct {
		name   string
		set    func(*http.Request)
		status int
		code   string
	}{
		{"no token", upgrade, http.StatusUnauthorized, "missing_token"},
		{"a bad token", func(r *http.Request) {
			upgrade(r)
			r.Header.Set("Sec-WebSocket-Protocol", "papo.v1, bearer.garbage")
		}, http.StatusUnauthorized, "invalid_token"},
		{"a token of an unknown key", func(r *http.Request) {
			upgrade(r)
			r.Header.Set("Authorization", "Bearer "+authntest.New().Token("u1", "s1", time.Minute))
		}, http.StatusUnauthorized, "invalid_token"},
		{"no upgrade", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+iss.Token("u1", "s1", time.Minute))
		}, http.StatusBadRequest, "websocket_required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", gw.URL+"/ws", nil)
			c.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status || errorCode(t, resp) != c.code {
				t.Fatalf("status %d, want %d %s", resp.StatusCode, c.status, c.code)
			}
		})
	}
	if n := rp.count(); n != 0 {
		t.Fatalf("%d refused requests reached the replica", n)
	}
}

// TestWSRelayCarriesFramesBothWaysAndClosesCleanly: without hand-off the
// gateway relays; frames pass both ways, close codes from either side
// arrive, the replica learns who the client is, and nothing is left of
// the relay afterwards.
func TestWSRelayCarriesFramesBothWaysAndClosesCleanly(t *testing.T) {
	iss := authntest.New()
	rp, _ := newReplica(t, "a")
	p, gw := newProxy(t, iss, []string{rp.url}, nil, time.Minute)
	tok := iss.Token("u1", "s1", time.Minute)

	c, hello := dial(t, gw, tok)
	if hello != "hello a" {
		t.Fatalf("got %q", hello)
	}
	exchange(t, c, "one")
	exchange(t, c, strings.Repeat("x", 100_000)) // more than one read's buffer
	req := rp.last(t)
	if got := req.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client's 127.0.0.1", got)
	}
	if got := req.Header.Get("Connection"); !strings.Contains(got, "close") {
		t.Errorf("Connection %q: a refused upgrade must end the connection", got)
	}
	if p.relayed() != 1 {
		t.Fatalf("%d relays, want 1", p.relayed())
	}
	// The replica closes with a code of its own.
	if err := c.WriteMessage(websocket.TextMessage, []byte("close-4001")); err != nil {
		t.Fatal(err)
	}
	if got := closedWith(t, c); got != 4001 {
		t.Fatalf("close code %d, want 4001", got)
	}
	c.Close()
	eventually(t, 5*time.Second, "the relay ends", func() bool { return p.relayed() == 0 })

	// The client closes.
	c2, _ := dial(t, gw, tok)
	if err := c2.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the replica sees the client's 1000", func() bool {
		rp.mu.Lock()
		defer rp.mu.Unlock()
		return len(rp.closes) == 1 && rp.closes[0] == websocket.CloseNormalClosure
	})
	c2.Close()
	eventually(t, 5*time.Second, "the relay ends", func() bool { return p.relayed() == 0 })
}

// TestWSBalancesAndSkipsADeadReplicaAtOnce: connections alternate over
// the replicas; when one dies the health check marks it down within a
// second, and even before it does, no client is refused: a replica that
// does not answer is skipped for the next one.
func TestWSBalancesAndSkipsADeadReplicaAtOnce(t *testing.T) {
	iss := authntest.New()
	tok := iss.Token("u1", "s1", time.Minute)
	for _, c := range []struct {
		name     string
		interval time.Duration
		dialLate bool // dial only after the check marked it down
	}{
		{"the health check marks it down", 100 * time.Millisecond, true},
		{"before any check, the next replica takes the client", time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newReplica(t, "a")
			b, bsrv := newReplica(t, "b")
			p, gw := newProxy(t, iss, []string{a.url, b.url}, nil, c.interval)
			for range 4 {
				c, _ := dial(t, gw, tok)
				c.Close()
			}
			if a.count() != 2 || b.count() != 2 {
				t.Fatalf("connections per replica: a %d, b %d; want 2 and 2", a.count(), b.count())
			}
			bsrv.CloseClientConnections()
			bsrv.Close()
			if c.dialLate {
				eventually(t, time.Second, "the dead replica is marked down", func() bool { return !p.upstreams[1].healthy.Load() })
			}
			for range 4 {
				if _, hello := dial(t, gw, tok); hello != "hello a" {
					t.Fatalf("got %q", hello)
				}
			}
		})
	}
}

// TestWSHandoffGivesTheClientsSocketToTheReplica: with a hand-off
// socket, the replica serves the client's own connection (it sees the
// client's address), the gateway relays nothing, and the conversation and
// its close codes work as before.
func TestWSHandoffGivesTheClientsSocketToTheReplica(t *testing.T) {
	iss := authntest.New()
	rp, sock, _ := newHandoffReplica(t, "a")
	p, gw := newProxy(t, iss, []string{rp.url}, []string{sock}, time.Minute)
	c, hello := dial(t, gw, iss.Token("u1", "s1", time.Minute))
	if hello != "hello a" {
		t.Fatalf("got %q", hello)
	}
	if got, want := rp.last(t).RemoteAddr, c.LocalAddr().String(); got != want {
		t.Fatalf("the replica saw the client at %s, want %s: the connection was not handed off", got, want)
	}
	// The replica requires the app token on /ws: a handed-off request
	// carries it as a relayed one does.
	if got := rp.last(t).Header.Get(httpapi.AppTokenHeader); got != testAppToken {
		t.Errorf("app token %q on a handed-off connection, want the gateway's", got)
	}
	if p.relayed() != 0 {
		t.Fatalf("%d relays for a handed-off connection", p.relayed())
	}
	exchange(t, c, "one")
	if err := c.WriteMessage(websocket.TextMessage, []byte("close-4001")); err != nil {
		t.Fatal(err)
	}
	if got := closedWith(t, c); got != 4001 {
		t.Fatalf("close code %d, want 4001", got)
	}
}

// TestWSHandoffSocketClosingMarksTheReplicaDownAtOnce: a replica whose
// hand-off socket closes (it died, or is shutting down) gets no more
// connections, long before its next health check.
func TestWSHandoffSocketClosingMarksTheReplicaDownAtOnce(t *testing.T) {
	iss := authntest.New()
	a, sockA, lnA := newHandoffReplica(t, "a")
	b, sockB, _ := newHandoffReplica(t, "b")
	p, gw := newProxy(t, iss, []string{a.url, b.url}, []string{sockA, sockB}, time.Hour)
	tok := iss.Token("u1", "s1", time.Minute)
	dial(t, gw, tok) // connects the senders
	dial(t, gw, tok)
	lnA.Close()
	eventually(t, time.Second, "replica a is marked down", func() bool { return !p.upstreams[0].healthy.Load() })
	before := a.count()
	for range 4 {
		if _, hello := dial(t, gw, tok); hello != "hello b" {
			t.Fatalf("got %q, want every connection on b", hello)
		}
	}
	if a.count() != before || b.count() != 5 {
		t.Fatalf("a got %d more, b has %d", a.count()-before, b.count())
	}
}

// TestWSIsRelayedWhenTheGatewaySpeaksTLS: a TLS session cannot move to
// another process, so a client on TLS is relayed even where hand-off is
// configured.
func TestWSIsRelayedWhenTheGatewaySpeaksTLS(t *testing.T) {
	iss := authntest.New()
	rp, sock, _ := newHandoffReplica(t, "a")
	p, err := newWSProxy(t.Context(), []string{rp.url}, []string{sock}, true, time.Minute, testAppToken, iss.Verifier(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewTLSServer(p)
	t.Cleanup(gw.Close)
	c, hello := dial(t, gw, iss.Token("u1", "s1", time.Minute))
	if hello != "hello a" {
		t.Fatalf("got %q", hello)
	}
	exchange(t, c, "over tls")
	if p.relayed() != 1 {
		t.Fatalf("%d relays, want 1", p.relayed())
	}
	if got := rp.last(t).Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto %q, want https", got)
	}
	if got := rp.last(t).Header.Get(httpapi.AppTokenHeader); got != testAppToken {
		t.Errorf("app token %q on a relayed connection, want the gateway's", got)
	}
}

// TestWSUpstreamRequestKeepsTheHandshakeAndDropsHopHeaders: what a
// replica gets, handed off or relayed, is the handshake, the allow-listed
// headers and the gateway's app token; never a client's own dapr-*,
// forwarding or other headers.
func TestWSUpstreamRequestKeepsTheHandshakeAndDropsHopHeaders(t *testing.T) {
	r := httptestRequest(t, "GET /ws?x=1 HTTP/1.1\r\nHost: papo.example\r\nConnection: keep-alive, Upgrade, X-Secret\r\n"+
		"Upgrade: websocket\r\nX-Secret: s\r\nX-Forwarded-For: 6.6.6.6\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Protocol: papo.v1, bearer.t\r\n"+
		"Dapr-Api-Token: client-chosen\r\nDapr-App-Id: message\r\nCookie: c=1\r\nX-Other: o\r\n"+
		"Origin: http://papo.example\r\n\r\n")
	got := string(upstreamRequest(r, testAppToken))
	for _, want := range []string{"GET /ws?x=1 HTTP/1.1\r\n", "Host: papo.example\r\n", "Connection: Upgrade, close\r\n",
		"Upgrade: websocket\r\n", "Sec-Websocket-Key: k\r\n", "Sec-Websocket-Protocol: papo.v1, bearer.t\r\n", "Origin: http://papo.example\r\n",
		"Dapr-Api-Token: " + testAppToken + "\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("request lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"X-Secret", "6.6.6.6", "keep-alive", "client-chosen", "Dapr-App-Id", "Cookie", "X-Other"} {
		if strings.Contains(got, gone) {
			t.Errorf("request still holds %q:\n%s", gone, got)
		}
	}
	if !strings.HasSuffix(got, "\r\n\r\n") {
		t.Errorf("request head does not end with an empty line")
	}
}

func httptestRequest(t *testing.T, raw string) *http.Request {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *http.Request, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r })}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("request not parsed")
		return nil
	}
}

func TestConfigWantsOneHandoffSocketPerUpstream(t *testing.T) {
	c := Config{WSUpstreams: []string{"http://a:1", "http://b:1"}, WSHandoff: []string{"/run/a.sock"},
		RatePerIP: 1, RatePerUser: 1, MaxBody: 1, WSHealthInterval: time.Second, StatusInterval: time.Second,
		SessionCookieMaxAge: time.Hour}
	if err := c.Validate(); err == nil {
		t.Fatal("one hand-off socket for two upstreams was accepted")
	}
	c.WSHandoff = []string{"/run/a.sock", ""}
	if err := c.Validate(); err != nil {
		t.Fatalf("a socket for the first upstream only: %v", err)
	}
}
