package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/handoff"
	"github.com/papochat/papo/platform/httpapi"
)

// wsProxy is GET /ws: it checks the access token at the edge, picks a
// healthy ws replica round robin and gives it the client's connection.
//
//   - Hand-off, when the replica shares this machine (GATEWAY_WS_HANDOFF)
//     and the client speaks plain HTTP: the client's TCP socket itself
//     and the request bytes go to the replica over a Unix socket (package
//     handoff). The replica serves it as if it had accepted it; the
//     gateway keeps nothing and copies nothing.
//   - Relay otherwise (TLS at the gateway, replicas on other hosts, a
//     request too large to hand off): the request goes to the replica
//     over a new TCP connection and the bytes are copied both ways. An
//     idle relayed socket holds no buffer: a copy borrows one from a pool
//     only while bytes flow.
//
// Replicas are health-checked (/readyz every GATEWAY_WS_HEALTH_INTERVAL,
// and at once when a hand-off socket closes), so a dead one stops getting
// connections within a second. On Kubernetes the single upstream is the
// ws Service, which balances by itself (docs/deploy.md).
//
// Either way the replica gets the request as upstreamRequest rebuilds it:
// the allow-listed handshake headers and the app API token, which the
// replicas require on /ws as on every route but their probes.
type wsProxy struct {
	upstreams []*wsUpstream
	next      atomic.Uint64
	verifier  authn.TokenVerifier
	appToken  string // the app API token the replicas require on /ws
	log       *slog.Logger
	health    *http.Client
	interval  time.Duration

	mu     sync.Mutex
	relays map[*relay]struct{}
	closed bool
}

// wsUpstream is one ws replica (or the Service in front of them).
type wsUpstream struct {
	url    *url.URL
	addr   string // host:port to dial
	tls    bool
	sender *handoff.Sender // nil: no hand-off to this replica

	healthy   atomic.Bool
	handoffOK atomic.Bool // the last hand-off worked; a failure is logged once
}

// upstreamDialTimeout bounds connecting to a replica for a relay.
const upstreamDialTimeout = 2 * time.Second

// newWSProxy returns the /ws handler. Its health checks and relays run
// until ctx ends; then relayed sockets are closed. Hand-off is used only
// where handoffs names a socket for the replica and the gateway serves
// plain HTTP (useHandoff). Every request a replica gets, handed off or
// relayed, presents appToken (the app API token the ws replicas require
// on every route but their probes).
func newWSProxy(ctx context.Context, upstreams, handoffs []string, useHandoff bool, interval time.Duration,
	appToken string, verifier authn.TokenVerifier, log *slog.Logger) (*wsProxy, error) {
	p := &wsProxy{
		verifier: verifier,
		appToken: appToken,
		log:      log,
		interval: interval,
		relays:   map[*relay]struct{}{},
		health: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
		}},
	}
	for i, raw := range upstreams {
		target, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		u := &wsUpstream{url: target, addr: target.Host, tls: target.Scheme == "https"}
		if target.Port() == "" {
			port := "80"
			if u.tls {
				port = "443"
			}
			u.addr = net.JoinHostPort(target.Hostname(), port)
		}
		u.healthy.Store(true) // until a check says otherwise
		u.handoffOK.Store(true)
		if useHandoff && i < len(handoffs) && strings.TrimSpace(handoffs[i]) != "" {
			u.sender = handoff.NewSender(strings.TrimSpace(handoffs[i]), func() { p.setHealthy(u, false, "its hand-off socket closed") })
		}
		p.upstreams = append(p.upstreams, u)
	}
	for _, u := range p.upstreams {
		go p.watch(ctx, u)
	}
	go func() {
		<-ctx.Done()
		p.shutdown()
	}()
	return p, nil
}

func (p *wsProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := authn.BearerToken(r)
	if token == "" {
		token = protocolToken(r)
	}
	if token == "" {
		httpapi.Error(w, r, p.log, apierror.New(apierror.Unauthenticated, "missing_token",
			"a token is required: Sec-WebSocket-Protocol %q, %q or an Authorization header", api.Subprotocol, api.BearerProtocolPref+"<token>"))
		return
	}
	if _, err := p.verifier.Verify(r.Context(), token); err != nil {
		httpapi.Error(w, r, p.log, err)
		return
	}
	// Only an upgrade leaves the gateway: the connection is the replica's
	// afterwards, and it must not serve anything else on it.
	if r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		httpapi.Error(w, r, p.log, apierror.Invalidf("websocket_required", "GET /ws expects a WebSocket upgrade"))
		return
	}
	header := w.Header().Clone() // for an answer after the hijack
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		httpapi.Error(w, r, p.log, apierror.Invalidf("websocket_required", "this connection cannot carry a WebSocket"))
		return
	}
	var early []byte // bytes the client sent after the request, read already
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
	}
	for _, u := range p.candidates() {
		if p.handOff(u, conn, r, early) || p.relay(u, conn, r, early) {
			return
		}
	}
	p.log.WarnContext(r.Context(), "no ws replica took the connection", "request_id", httpapi.RequestID(r.Context()))
	writeUnavailable(conn, header)
}

// candidates returns the upstreams to try, round robin: the healthy ones
// first, then (as a last resort, the checks may lag) the others.
func (p *wsProxy) candidates() []*wsUpstream {
	n := len(p.upstreams)
	start := int(p.next.Add(1) % uint64(n))
	out := make([]*wsUpstream, 0, n)
	for _, healthy := range []bool{true, false} {
		for i := range n {
			if u := p.upstreams[(start+i)%n]; u.healthy.Load() == healthy {
				out = append(out, u)
			}
		}
	}
	return out
}

// handOff passes conn to u's replica; true when it took it, and conn is
// closed here (the replica holds the connection now).
func (p *wsProxy) handOff(u *wsUpstream, conn net.Conn, r *http.Request, early []byte) bool {
	// The listener's own wrapper (httpapi.JSONProtocolErrors) holds the
	// accepted connection.
	if w, ok := conn.(interface{ Unwrap() net.Conn }); ok {
		conn = w.Unwrap()
	}
	tcp, ok := conn.(*net.TCPConn) // not a *tls.Conn
	if u.sender == nil || !ok {
		return false
	}
	payload := append(upstreamRequest(r, p.appToken), early...)
	if len(payload) > handoff.MaxPayload {
		return false
	}
	if err := u.sender.Send(tcp, payload); err != nil {
		if u.handoffOK.Swap(false) {
			p.log.Warn("hand-off failed; relaying instead", "upstream", u.url.String(), "socket", u.sender.Path(), "err", err)
		}
		return false
	}
	if !u.handoffOK.Swap(true) {
		p.log.Info("hand-off works again", "upstream", u.url.String(), "socket", u.sender.Path())
	}
	_ = conn.Close()
	return true
}

// relay connects to u and copies between it and conn; true when u
// answered.
func (p *wsProxy) relay(u *wsUpstream, conn net.Conn, r *http.Request, early []byte) bool {
	d := &net.Dialer{Timeout: upstreamDialTimeout}
	var up net.Conn
	var err error
	if u.tls {
		up, err = (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: u.url.Hostname()}}).Dial("tcp", u.addr)
	} else {
		up, err = d.Dial("tcp", u.addr)
	}
	if err == nil {
		_ = up.SetWriteDeadline(time.Now().Add(upstreamDialTimeout))
		_, err = up.Write(append(upstreamRequest(r, p.appToken), early...))
		_ = up.SetWriteDeadline(time.Time{})
		if err != nil {
			up.Close()
		}
	}
	if err != nil {
		p.setHealthy(u, false, err.Error())
		return false
	}
	_ = conn.SetDeadline(time.Time{})
	p.startRelay(conn, up)
	return true
}

// upstreamRequest is the upgrade request as a replica receives it, handed
// off or relayed: GET /ws with the client's query, only the allow-listed
// handshake headers (wsHeaders: never a client's dapr-* or forwarding
// headers, nor one its Connection header names), Upgrade: websocket and
// Connection: close as well, so a refused upgrade ends the connection
// (the replica serves nothing else on it). The gateway adds who the
// client is (X-Forwarded-For from the trusted client address, -Host,
// -Proto) and appToken in the app token header: the replica's /ws, like
// its every route but the probes, answers only requests that carry it.
func upstreamRequest(r *http.Request, appToken string) []byte {
	h := r.Header.Clone()
	for _, name := range r.Header.Values("Connection") {
		for _, n := range strings.Split(name, ",") {
			h.Del(strings.TrimSpace(n))
		}
	}
	keepOnly(h, wsHeaders)
	h.Set("Connection", "Upgrade, close")
	h.Set("Upgrade", "websocket")
	if a := clientAddrOf(r.Context()); a.IsValid() {
		h.Set("X-Forwarded-For", a.String())
	}
	h.Set("X-Forwarded-Host", r.Host)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	h.Set(httpapi.AppTokenHeader, appToken)
	var b bytes.Buffer
	b.WriteString("GET /ws")
	if r.URL.RawQuery != "" {
		b.WriteString("?")
		b.WriteString(r.URL.RawQuery)
	}
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(r.Host)
	b.WriteString("\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// writeUnavailable answers a hijacked connection with papo's 503 and
// closes it.
func writeUnavailable(conn net.Conn, h http.Header) {
	body, _ := json.Marshal(httpapi.ErrorBody{Error: httpapi.ErrorDetail{Code: "unavailable", Message: "no realtime server answered; retry"}})
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", "1")
	resp := &http.Response{
		StatusCode: http.StatusServiceUnavailable, ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)), Close: true,
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = resp.Write(conn)
	_ = conn.Close()
}

// watch checks u's /readyz every interval until ctx ends.
func (p *wsProxy) watch(ctx context.Context, u *wsUpstream) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.check(ctx, u)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *wsProxy) check(ctx context.Context, u *wsUpstream) {
	ctx, cancel := context.WithTimeout(ctx, max(2*p.interval, 500*time.Millisecond))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url.JoinPath("/readyz").String(), nil)
	if err != nil {
		return
	}
	resp, err := p.health.Do(req)
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return // shutting down
	}
	if err != nil {
		p.setHealthy(u, false, err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.setHealthy(u, false, "/readyz answered "+strconv.Itoa(resp.StatusCode))
		return
	}
	if u.sender != nil {
		// Connected, the sender learns at once when the replica goes. A
		// replica that answers /readyz but whose hand-off socket is gone
		// is stopping: without this, a check that was under way when
		// the socket closed would mark it up again.
		if err := u.sender.Connect(); err != nil {
			p.setHealthy(u, false, err.Error())
			return
		}
	}
	p.setHealthy(u, true, "")
}

func (p *wsProxy) setHealthy(u *wsUpstream, ok bool, why string) {
	if u.healthy.Swap(ok) == ok {
		return
	}
	if ok {
		p.log.Info("ws replica is up", "upstream", u.url.String())
	} else {
		p.log.Warn("ws replica is down; not sending it connections", "upstream", u.url.String(), "reason", why)
	}
}

// shutdown closes every relayed socket and the hand-off connections.
func (p *wsProxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	relays := make([]*relay, 0, len(p.relays))
	for rl := range p.relays {
		relays = append(relays, rl)
	}
	p.mu.Unlock()
	for _, rl := range relays {
		rl.close()
	}
	for _, u := range p.upstreams {
		if u.sender != nil {
			_ = u.sender.Close()
		}
	}
}

// protocolToken returns the token a browser sends as a WebSocket
// subprotocol "bearer.<token>".
func protocolToken(r *http.Request) string {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, api.BearerProtocolPref) {
				return strings.TrimPrefix(p, api.BearerProtocolPref)
			}
		}
	}
	return ""
}
