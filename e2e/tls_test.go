package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

// The public entry over TLS (launcher Options.TLS, `make run TLS=1`):
// HTTPS and WSS only, with the local CA the launcher made trusted, and a
// plain-HTTP port that only redirects.

// tlsStack is a local stack served over TLS, with a redirect port; its
// redirect address is the second result.
func tlsStack(t *testing.T) (*launcher.Stack, string) {
	t.Helper()
	stacksMu.Lock()
	redirect := tlsRedirect
	if redirect == "" {
		ports, err := launcher.FreePorts(1)
		if err != nil {
			stacksMu.Unlock()
			t.Fatal(err)
		}
		redirect = "127.0.0.1:" + strconv.Itoa(ports[0])
		tlsRedirect = redirect
	}
	stacksMu.Unlock()
	s := startStack(t, "local-tls", "local", func(o *launcher.Options) {
		o.TLS = true
		o.HTTPRedirectAddr = redirect
	})
	return s, redirect
}

// tlsRedirect is the TLS stack's redirect address, chosen once.
var tlsRedirect string

// trusting returns TLS settings that trust the stack's local CA only.
func trusting(t *testing.T, s *launcher.Stack) *tls.Config {
	t.Helper()
	if s.TLS == nil {
		t.Fatal("the stack has no TLS files")
	}
	pool, err := s.TLS.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool}
}

// newTLSUser is newUser over HTTPS.
func newTLSUser(t *testing.T, s *launcher.Stack, prefix string) *user {
	t.Helper()
	ctx := context.Background()
	c := client.New(s.GatewayURL)
	c.HTTP.Transport = &http.Transport{TLSClientConfig: trusting(t, s), ForceAttemptHTTP2: true}
	name := randomName(prefix)
	pw := "correct horse " + name
	if _, err := c.Register(ctx, name, pw, strings.ToUpper(prefix)); err != nil {
		t.Fatalf("register %s over HTTPS: %v", name, err)
	}
	tok, err := c.Login(ctx, name, pw)
	if err != nil {
		t.Fatalf("login %s over HTTPS: %v", name, err)
	}
	return &user{Client: c, User: tok.User, Password: pw, Refresh: tok.RefreshToken}
}

// wsOpened is how many WebSockets each ws replica has accepted.
func wsOpened(t *testing.T, s *launcher.Stack) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, a := range s.Apps("ws") {
		out[a.Name] = scrapeOnce(t, a.MetricsURL()).value("papo_ws_connections_opened_total")
	}
	return out
}

// dialTLSOn opens u's WSS through the gateway and returns it with the
// name of the ws replica that took it.
func dialTLSOn(t *testing.T, s *launcher.Stack, u *user) (*client.WS, string) {
	t.Helper()
	before := wsOpened(t, s)
	ws := dialGatewayWith(t, u, &client.WSOptions{Origin: s.GatewayURL})
	var replica string
	eventually(t, 5*time.Second, "a replica counts the new socket", func() bool {
		for name, n := range wsOpened(t, s) {
			if n > before[name] {
				replica = name
				return true
			}
		}
		return false
	})
	return ws, replica
}

// TestChatOverTLS: on a stack served over TLS, REST is HTTP/2 over
// HTTPS, two people chat over wss:// on both ws replicas, the gateway
// relays each socket (a TLS session cannot be handed to another process),
// TLS 1.1 is refused, plain HTTP on the public port is not served and the
// redirect port only redirects.
func TestChatOverTLS(t *testing.T) {
	s, redirect := tlsStack(t)
	ctx := context.Background()
	if !strings.HasPrefix(s.GatewayURL, "https://") {
		t.Fatalf("GatewayURL %s, want https", s.GatewayURL)
	}
	gw := s.App("gateway")

	t.Run("REST over HTTP/2", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: trusting(t, s), ForceAttemptHTTP2: true}}
		resp, err := hc.Get(s.GatewayURL + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Errorf("GET /api/v1/status: %s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
		}
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS over TLS")
		}
	})

	t.Run("a message over wss on both replicas", func(t *testing.T) {
		alice, bob := newTLSUser(t, s, "alice"), newTLSUser(t, s, "bob")
		room, err := alice.CreateRoom(ctx, "tls "+randomName(""), api.RoomPublic)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
			t.Fatal(err)
		}
		aws, aOn := dialTLSOn(t, s, alice)
		bws, bOn := dialTLSOn(t, s, bob)
		// Round robin: the next dial goes to the other replica.
		for tries := 0; aOn == bOn && tries < 4; tries++ {
			bws.Close()
			bws, bOn = dialTLSOn(t, s, bob)
		}
		if aOn == bOn {
			t.Fatalf("both sockets on %s: the test wants one on each replica", aOn)
		}
		// Relayed: the socket the gateway accepted stays in the gateway.
		for _, ws := range []*client.WS{aws, bws} {
			if who := holder(t, s, serverSocket(t, s, ws.LocalAddr())); who != "gateway" {
				t.Errorf("over TLS the client's socket is held by %q, want the gateway (relay)", who)
			}
		}
		a, b := newCollector(aws), newCollector(bws)
		if err := a.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: "tls-1", Text: "over wss from " + aOn}); err != nil {
			t.Fatal(err)
		}
		a.until(t, 20*time.Second, "the ack", func() bool { return len(a.acks) == 1 })
		b.until(t, 20*time.Second, "alice's message on "+bOn, func() bool { return len(b.messages(room.ID)) == 1 })
		if got := b.messages(room.ID)[0].Text; got != "over wss from "+aOn {
			t.Errorf("bob got %q", got)
		}
		// And the history over HTTPS.
		evs, err := bob.EventsAfter(ctx, room.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range evs.Events {
			found = found || e.ClientID == "tls-1"
		}
		if !found {
			t.Error("the message is not in the room's history over HTTPS")
		}
	})

	t.Run("TLS below 1.2 is refused", func(t *testing.T) {
		addr := strings.TrimPrefix(s.GatewayURL, "https://")
		cfg := trusting(t, s)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
		if conn, err := tls.Dial("tcp", addr, cfg); err == nil {
			conn.Close()
			t.Fatal("a TLS 1.1 handshake was accepted")
		}
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("TLS 1.2: %v", err)
		}
		conn.Close()
	})

	t.Run("plain HTTP", func(t *testing.T) {
		// The public port speaks only TLS.
		resp, err := http.Get("http://" + strings.TrimPrefix(s.GatewayURL, "https://") + "/api/v1/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP to the TLS port: %s, want Go's 400 to an HTTP request", resp.Status)
			}
		}
		// The redirect port answers nothing but a redirect.
		noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.GatewayURL, "https://"))
		for _, path := range []string{"/", "/api/v1/status", "/ws?x=1"} {
			resp, err := noFollow.Get("http://" + redirect + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := "https://127.0.0.1:" + port + path
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Errorf("GET %s on the redirect port: %s Location %q, want 308 %q", path, resp.Status, resp.Header.Get("Location"), want)
			}
		}
		// The gateway's sidecar port is loopback, plain, and closed
		// without the app API token.
		resp, err = http.Get(gw.URL() + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the sidecar's port without the app API token: %s, want 401", resp.Status)
		}
	})
}

// TestACertificateSwappedOnDiskIsServedToTheNextConnection: a new
// certificate written over the gateway's (Renew, by renames, as
// certificate tools do) is served to the next connection, with no
// restart; a connection open before keeps working.
func TestACertificateSwappedOnDiskIsServedToTheNextConnection(t *testing.T) {
	s, _ := tlsStack(t)
	addr := strings.TrimPrefix(s.GatewayURL, "https://")
	serial := func() string {
		conn, err := tls.Dial("tcp", addr, trusting(t, s))
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	ctx := context.Background()
	u := newTLSUser(t, s, "rotor")
	room, err := u.CreateRoom(ctx, "rotation "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	ws := newCollector(dialGatewayWith(t, u, &client.WSOptions{Origin: s.GatewayURL}))
	pid := s.App("gateway").Pid()
	before := serial()

	if err := s.TLS.Renew(); err != nil {
		t.Fatal(err)
	}
	disk := readPEMSerial(t, s.TLS.Cert, s.TLS.Key)
	if disk == before {
		t.Fatal("Renew wrote the same serial")
	}
	if got := serial(); got != disk {
		t.Fatalf("after the swap the gateway serves serial %s, want the new %s (it served %s before)", got, disk, before)
	}
	if s.App("gateway").Pid() != pid {
		t.Error("the gateway restarted")
	}
	// The socket opened before the swap still carries frames.
	if err := ws.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: "after-swap", Text: "still here"}); err != nil {
		t.Fatalf("the WebSocket opened before the swap: %v", err)
	}
	ws.until(t, 20*time.Second, "the ack on the socket opened before the swap", func() bool { return len(ws.acks) == 1 })
	if _, err := u.Me(ctx); err != nil {
		t.Errorf("REST after the swap: %v", err)
	}
}

// readPEMSerial is the serial of the certificate in certFile.
func readPEMSerial(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	certs, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(certs.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}
