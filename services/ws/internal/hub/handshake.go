package hub

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"
)

// ServeHTTP is GET /ws. Everything that can refuse a client is checked
// before the upgrade, so the refusal is an HTTP status with papo's error
// body: 403 for an origin outside the allow-list, 401 for a missing, bad
// or revoked token, 503 while shutting down or when the message service
// does not answer. The per-user cap is enforced after the upgrade, with
// close code api.CloseTooManyConns, because browsers cannot read the
// status of a refused handshake.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.handshake(w, r); err != nil {
		code := "internal"
		if e, ok := apierror.As(err); ok {
			code = e.Code
		}
		h.metrics.handshakeRefused(code)
		httpapi.Error(w, r, h.log, err)
	}
}

func (h *Hub) handshake(w http.ResponseWriter, r *http.Request) error {
	if h.closing.Load() {
		return apierror.New(apierror.Unavailable, "shutting_down", "this replica is shutting down; reconnect")
	}
	if !h.originAllowed(r.Header.Get("Origin")) {
		return apierror.New(apierror.Forbidden, "origin_not_allowed", "origin is not allowed")
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return apierror.Invalidf("websocket_required", "GET /ws expects a WebSocket upgrade")
	}
	token, err := handshakeToken(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	claims, err := h.deps.Verifier.Verify(ctx, token)
	if err != nil {
		return err
	}
	if err := h.deps.Sessions.Check(ctx, claims.SessionID); err != nil {
		return err
	}
	rooms, err := h.deps.Messages.UserRooms(ctx, claims.UserID)
	if err != nil {
		return err
	}

	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader answered the client already
	}
	c := h.newConn(claims.UserID, claims.SessionID)
	c.ws = ws // before anything else can see c
	if !h.users.add(c, h.cfg.MaxConnsPerUser) {
		c.cancel()
		deadline := time.Now().Add(time.Second)
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(api.CloseTooManyConns, "too many connections for this user"), deadline)
		_ = ws.Close()
		return nil
	}
	var connID string
	if h.deps.Presence != nil {
		connID = h.deps.Presence.Connected(c.userID)
	}
	h.conns.Add(1)
	h.stats.Open.Add(1)
	h.metrics.opened.Inc()
	c.seen()
	c.startPings()

	// hello is queued first, so nothing can overtake it; the rooms are
	// routed after it, while the connection is not live yet; and the
	// writer starts only then, so a client that has its hello is routed
	// (an event persisted right after it reaches the socket).
	hello := api.HelloFrame{Type: api.FrameHello, UserID: c.userID, SessionID: c.sessionID, Rooms: rooms}
	if hello.Rooms == nil {
		hello.Rooms = []api.RoomCursor{}
	}
	c.send(frame{b: encode(hello), kind: outHello})
	for _, rc := range rooms {
		h.rooms.attach(rc.RoomID, c, rc.LastSeq)
	}
	c.out.release()
	c.setExpiry(claims.ExpiresAt)
	c.mu.Lock()
	c.hold = time.AfterFunc(h.cfg.LiveHold, c.goLive)
	c.mu.Unlock()
	if h.closing.Load() {
		// Shutdown began while this socket was being set up and may have
		// missed it.
		c.close(websocket.CloseGoingAway, "server shutting down")
	}

	// The reader runs on its own goroutine and the handler returns, so the
	// HTTP server's request, buffers and grown handler stack are freed
	// for the socket's whole life (most of an idle socket's cost).
	h.log.Debug("socket opened", "user_id", c.userID, "rooms", len(rooms), "client", r.RemoteAddr)
	go c.serve(connID)
	return nil
}

// serve reads the socket until it ends, then unroutes it. It runs for the
// socket's whole life, so its own frame stays small (see readLoop).
func (c *conn) serve(connID string) {
	c.readLoop()
	c.unroute(connID)
}

// unroute takes a socket whose reader ended (it is closed or closing)
// out of every table.
func (c *conn) unroute(connID string) {
	h := c.h
	defer func() {
		h.stats.Open.Add(-1)
		h.conns.Done()
	}()
	c.close(websocket.CloseNormalClosure, "")
	h.users.remove(c)
	if h.deps.Presence != nil {
		// Before conns.Done, so a shutdown's drain has it queued.
		h.deps.Presence.Disconnected(c.userID, connID)
	}
	c.mu.Lock()
	ids := make([]string, 0, len(c.rooms))
	for id := range c.rooms {
		ids = append(ids, id)
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	if c.hold != nil {
		c.hold.Stop()
	}
	c.ping.Stop()
	c.mu.Unlock()
	for _, id := range ids {
		h.rooms.detach(id, c)
	}
	<-c.writerDone
	h.log.Debug("socket closed", "user_id", c.userID, "code", c.closeCode, "reason", c.closeText)
}

// handshakeToken takes the access token from Sec-WebSocket-Protocol
// ("papo.v1, bearer.<jwt>", for browsers, which cannot set headers) or
// from Authorization. Never from the query string: URLs end up in logs.
func handshakeToken(r *http.Request) (string, error) {
	var token string
	offered := false
	for _, p := range websocket.Subprotocols(r) {
		switch {
		case p == api.Subprotocol:
			offered = true
		case strings.HasPrefix(p, api.BearerProtocolPref):
			token = strings.TrimPrefix(p, api.BearerProtocolPref)
		}
	}
	if token != "" && !offered {
		// The server must answer one of the offered subprotocols, and the
		// bearer one is not a protocol.
		return "", apierror.Invalidf("subprotocol_required", "offer the %s subprotocol with the bearer token", api.Subprotocol)
	}
	if token == "" {
		token = authn.BearerToken(r)
	}
	if token == "" {
		return "", apierror.New(apierror.Unauthenticated, "missing_token",
			"send the access token in Sec-WebSocket-Protocol (bearer.<token>) or Authorization")
	}
	return token, authn.CheckTokenSize(token)
}

// originAllowed accepts requests without Origin (non-browser clients) and
// browser origins on the allow-list.
func (h *Hub) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	return h.origins[normalizeOrigin(origin)]
}

// normalizeOrigin lower-cases scheme and host and drops a trailing slash;
// "" for something that is not an origin.
func normalizeOrigin(o string) string {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}
