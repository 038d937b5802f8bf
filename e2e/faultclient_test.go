package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/wait"
)

// The fault suite's client: a chat user who keeps sending, and reads, as
// docs/protocol.md tells a client to — a unique client_id per message,
// the same one on every retry, a reconnect with backoff when the socket
// drops, and a resume from the last seq seen per room as the new socket's
// first frame, then the sends that await their ack again. It records
// everything the checker needs, and speaks WebSocket itself (gorilla) so
// that it alone decides which frames a socket sees.

// Retryable error codes (docs/protocol.md): the send was not taken; the
// same client_id is sent again.
var retryable = map[string]bool{"server_busy": true, "unavailable": true, "rate_limited": true, "too_many_pending": true}

// outgoing is one message the client sent.
type outgoing struct {
	room, clientID, text string
	firstSent, lastSent  time.Time
	retryAt              time.Time // set by a retryable refusal
	attempts             int
	ackAt                time.Time
	seq                  int64
}

// delivery is one event as a receiver got it.
type delivery struct {
	seq           int64
	typ, clientID string
	at            time.Time
}

// socketLife is one socket of a client: when it dropped and how long the
// client took to be back (the next socket's hello).
type socketLife struct {
	dropped, back time.Time
	err           string
}

type chatClient struct {
	name   string
	u      *user
	wsURL  string
	room   string
	rate   float64 // new messages per second
	resend float64 // most resends per second, so a backlog stays under the frame rate

	mu        sync.Mutex
	conn      *websocket.Conn
	wmu       sync.Mutex // one writer per socket
	lastSeen  map[string]int64
	start     map[string]int64 // the seq before the first event this client must see
	received  map[string][]delivery
	sent      map[string]*outgoing // by client_id
	pending   map[string]*outgoing
	n         int
	sockets   []socketLife
	problems  []string
	drops     chan struct{}
	unexpects int
}

func newChatClient(name string, u *user, gatewayURL, room string, rate, resend float64) *chatClient {
	return &chatClient{
		name: name, u: u, wsURL: "ws" + strings.TrimPrefix(gatewayURL, "http") + "/ws", room: room, rate: rate, resend: resend,
		lastSeen: map[string]int64{}, start: map[string]int64{}, received: map[string][]delivery{},
		sent: map[string]*outgoing{}, pending: map[string]*outgoing{}, drops: make(chan struct{}, 1),
	}
}

func (c *chatClient) problem(format string, args ...any) {
	c.problems = append(c.problems, c.name+": "+fmt.Sprintf(format, args...))
}

// dial opens a socket, reads hello and resumes from the last seqs seen as
// the first frame. The first socket's hello sets where the client starts.
func (c *chatClient) dial(ctx context.Context) error {
	h := http.Header{"Authorization": {"Bearer " + c.u.Token}}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.DialContext(ctx, c.wsURL, h)
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			c.refreshToken(ctx)
		}
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hello api.ServerFrame
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != api.FrameHello {
		conn.Close()
		return fmt.Errorf("no hello (%v, %+v)", err, hello)
	}
	_ = conn.SetReadDeadline(time.Time{})
	c.mu.Lock()
	first := c.conn == nil && len(c.sockets) == 0
	for _, rc := range hello.Rooms {
		if _, ok := c.start[rc.RoomID]; !ok && first {
			c.start[rc.RoomID] = rc.LastSeq
			c.lastSeen[rc.RoomID] = rc.LastSeq
		}
	}
	resume := map[string]int64{}
	for room, seq := range c.lastSeen {
		resume[room] = seq
	}
	c.mu.Unlock()
	b, _ := json.Marshal(struct {
		Type  string           `json:"type"`
		Rooms map[string]int64 `json:"rooms"`
	}{api.FrameResume, resume})
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		conn.Close()
		return err
	}
	c.mu.Lock()
	c.conn = conn
	if n := len(c.sockets); n > 0 && c.sockets[n-1].back.IsZero() {
		c.sockets[n-1].back = time.Now()
	}
	c.mu.Unlock()
	go c.read(conn)
	return nil
}

// refreshToken gets a new access token when the old one expired.
func (c *chatClient) refreshToken(ctx context.Context) {
	// Only run's goroutine dials, so only it touches the tokens.
	if tok, err := c.u.Client.Refresh(ctx, c.u.Refresh); err == nil {
		c.u.Refresh = tok.RefreshToken // Refresh kept the access token
	}
}

// read takes the frames of one socket until it drops.
func (c *chatClient) read(conn *websocket.Conn) {
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			if c.conn == conn {
				c.conn = nil
				c.sockets = append(c.sockets, socketLife{dropped: time.Now(), err: err.Error()})
			}
			c.mu.Unlock()
			select {
			case c.drops <- struct{}{}:
			default:
			}
			return
		}
		var f api.ServerFrame
		if err := json.Unmarshal(b, &f); err != nil {
			c.mu.Lock()
			c.problem("undecodable frame %q", b)
			c.mu.Unlock()
			continue
		}
		c.take(f)
	}
}

// take records one frame.
func (c *chatClient) take(f api.ServerFrame) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Type {
	case api.FrameEvent:
		e := f.Event
		last, ok := c.lastSeen[e.RoomID]
		if !ok {
			c.problem("an event of room %s it is not in", e.RoomID)
			return
		}
		switch {
		case e.Seq <= last:
			c.problem("room %s: seq %d again (had %d): a duplicate", e.RoomID, e.Seq, last)
			return
		case e.Seq > last+1:
			c.problem("room %s: seq %d after %d: a gap", e.RoomID, e.Seq, last)
		}
		c.lastSeen[e.RoomID] = e.Seq
		c.received[e.RoomID] = append(c.received[e.RoomID], delivery{seq: e.Seq, typ: e.Type, clientID: e.ClientID, at: now})
	case api.FrameAck:
		o := c.sent[f.ClientID]
		switch {
		case o == nil:
			c.problem("an ack of %s, which it never sent", f.ClientID)
		case !o.ackAt.IsZero() && o.seq != f.Seq:
			c.problem("%s acked as seq %d and as seq %d", f.ClientID, o.seq, f.Seq)
		case o.ackAt.IsZero():
			o.ackAt, o.seq = now, f.Seq
			delete(c.pending, f.ClientID)
		}
	case api.FrameError:
		if o := c.pending[f.Ref]; o != nil && retryable[f.Code] {
			o.retryAt = now.Add(500 * time.Millisecond)
			return
		}
		c.problem("error frame %s %q (ref %q)", f.Code, f.Message, f.Ref)
	case api.FramePresence, api.FramePong:
	default:
		c.unexpects++
	}
}

// write sends one frame on the current socket; false when there is none.
func (c *chatClient) write(f api.ClientFrame) bool {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return false
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteJSON(f); err != nil {
		_ = conn.Close() // the reader notices and reports the drop
		return false
	}
	return true
}

// run sends new messages until sending ends, and keeps the socket up,
// resending what awaits its ack, until done ends.
func (c *chatClient) run(sending, done context.Context) {
	backoff := 100 * time.Millisecond
	newMsg := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
	defer newMsg.Stop()
	resend := time.NewTicker(time.Duration(float64(time.Second) / c.resend))
	defer resend.Stop()
	for done.Err() == nil {
		c.mu.Lock()
		connected := c.conn != nil
		c.mu.Unlock()
		if !connected {
			if err := c.dial(done); err != nil {
				if !wait.For(done, backoff) {
					return
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			c.resendAll()
		}
		select {
		case <-done.Done():
		case <-c.drops:
		case <-newMsg.C:
			if sending.Err() == nil {
				c.sendNew()
			}
		case <-resend.C:
			c.resendOne()
		}
	}
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (c *chatClient) sendNew() {
	c.mu.Lock()
	if len(c.pending) >= 200 {
		c.mu.Unlock()
		return
	}
	c.n++
	now := time.Now()
	o := &outgoing{room: c.room, clientID: fmt.Sprintf("%s-%d", c.name, c.n), text: fmt.Sprintf("%s says %d", c.name, c.n),
		firstSent: now, lastSent: now, attempts: 1}
	c.sent[o.clientID], c.pending[o.clientID] = o, o
	c.mu.Unlock()
	c.write(api.ClientFrame{Type: api.FrameSend, RoomID: o.room, ClientID: o.clientID, Text: o.text})
}

// ackTimeout is how long a send waits for its ack before it is sent again.
const ackTimeout = 5 * time.Second

// resendOne sends again the oldest send whose ack is overdue.
func (c *chatClient) resendOne() {
	now := time.Now()
	c.mu.Lock()
	var due *outgoing
	for _, o := range c.pending {
		overdue := now.Sub(o.lastSent) > ackTimeout || (!o.retryAt.IsZero() && now.After(o.retryAt))
		if overdue && (due == nil || o.firstSent.Before(due.firstSent)) {
			due = o
		}
	}
	if due != nil {
		due.lastSent, due.retryAt = now, time.Time{}
		due.attempts++
	}
	c.mu.Unlock()
	if due != nil {
		c.write(api.ClientFrame{Type: api.FrameSend, RoomID: due.room, ClientID: due.clientID, Text: due.text})
	}
}

// resendAll marks every pending send due, after a reconnect: the old
// socket's acks are lost with it. resendOne paces them.
func (c *chatClient) resendAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.pending {
		o.retryAt = time.Now()
	}
}

// unacked is how many sends await their ack.
func (c *chatClient) unacked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// seen is the last seq the client saw in room.
func (c *chatClient) seen(room string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeen[room]
}

// ackedSince reports whether an ack came after since.
func (c *chatClient) ackedSince(since time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.sent {
		if o.ackAt.After(since) {
			return true
		}
	}
	return false
}
