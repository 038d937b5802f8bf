package hub

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
)

// cursor is a connection's position in one room: the last seq it was sent.
// While syncing, live events of the room are not offered to the connection;
// its catch-up loop fetches them from the message service instead, until
// it reaches the room's head.
type cursor struct {
	room    *room
	seq     int64
	syncing bool
}

// conn is one WebSocket. Exactly one goroutine reads it (readLoop) and one
// writes it (writeLoop); everything else only pushes to its queue, so a
// slow client never blocks a producer.
type conn struct {
	h         *Hub
	ws        *websocket.Conn
	userID    string
	sessionID string

	ctx    context.Context
	cancel context.CancelFunc
	out    *queue

	limiter *rate.Limiter // client frames
	strikes *rate.Limiter // refused frames

	closeOnce sync.Once
	closeCode int
	closeText string
	// linger: the client may still be writing when the socket closes
	// (a frame over the hard limit); see lingerClose.
	linger     bool
	writerDone chan struct{}
	firstFrame bool // touched by the reader only

	mu      sync.Mutex
	live    bool
	rooms   map[string]*cursor
	pending map[ackKey]time.Time // sends awaiting their ack
	expiry  *time.Timer
	hold    *time.Timer
}

type ackKey struct{ room, clientID string }

func (h *Hub) newConn(userID, sessionID string) *conn {
	ctx, cancel := context.WithCancel(h.ctx)
	return &conn{
		h:          h,
		userID:     userID,
		sessionID:  sessionID,
		ctx:        ctx,
		cancel:     cancel,
		out:        newQueue(h.cfg.QueueBytes),
		limiter:    rate.NewLimiter(rate.Limit(h.cfg.Rate), h.cfg.Burst),
		strikes:    rate.NewLimiter(rate.Limit(h.cfg.StrikeRate), h.cfg.StrikeBurst),
		writerDone: make(chan struct{}),
		rooms:      map[string]*cursor{},
		pending:    map[ackKey]time.Time{},
	}
}

// send queues one encoded frame. A full queue disconnects the client: the
// producer never waits for it.
func (c *conn) send(b []byte) {
	if c.out.push(b) == overflow {
		c.h.stats.SlowConsumers.Add(1)
		c.close(api.CloseSlowConsumer, "outgoing queue overflowed")
	}
}

func (c *conn) sendError(code, message, ref string) {
	c.send(encode(api.ErrorFrame{Type: api.FrameError, Code: code, Message: message, Ref: ref}))
}

// close starts closing the connection with a close code. It never blocks
// and may be called from any goroutine, any number of times: the writer
// sends the close frame, and if the writer is stuck on a slow client the
// socket is closed under it after a second.
func (c *conn) close(code int, text string) { c.shut(code, text, false) }

func (c *conn) shut(code int, text string, linger bool) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText, c.linger = code, text, linger
		if code == api.ClosePolicy {
			c.h.stats.PolicyCloses.Add(1)
		}
		c.cancel()
		c.out.close()
		go func() {
			t := time.NewTimer(time.Second)
			defer t.Stop()
			select {
			case <-c.writerDone:
			case <-t.C:
			}
			if c.linger {
				lingerClose(c.ws.NetConn())
			}
			_ = c.ws.Close()
		}()
	})
}

// closeLingering is close for a client that is still writing: the socket
// is closed without a TCP reset (lingerClose), so the close frame reaches
// the client through any proxy.
func (c *conn) closeLingering(code int, text string) { c.shut(code, text, true) }

// writeLoop sends queued frames and heartbeat pings until the queue is
// closed or a write fails.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.h.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.out.ready:
			frames, closed := c.out.take()
			if closed {
				deadline := time.Now().Add(time.Second)
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.closeText), deadline)
				return
			}
			for _, f := range frames {
				if err := c.write(websocket.TextMessage, f); err != nil {
					return
				}
			}
		case <-ping.C:
			if err := c.write(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// write sends one frame within the write deadline. A missed deadline means
// the client does not read fast enough: it is cut off as a slow consumer.
func (c *conn) write(kind int, b []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	err := c.ws.WriteMessage(kind, b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.h.stats.SlowConsumers.Add(1)
			c.close(api.CloseSlowConsumer, "write deadline missed")
		} else {
			c.close(websocket.CloseAbnormalClosure, "write failed")
		}
		_ = c.ws.Close()
	}
	return err
}

// readLoop reads client frames until the socket fails or closes.
func (c *conn) readLoop() {
	c.ws.SetReadLimit(c.h.cfg.HardFrameBytes)
	extend := func() { _ = c.ws.SetReadDeadline(time.Now().Add(c.h.cfg.PongWait)) }
	extend()
	c.ws.SetPongHandler(func(string) error { extend(); return nil })
	for {
		kind, r, err := c.ws.NextReader()
		if err != nil {
			c.closeAfterReadError(err)
			return
		}
		extend()
		if kind != websocket.TextMessage {
			if _, err := io.Copy(io.Discard, r); err != nil {
				c.closeAfterReadError(err)
				return
			}
			c.refuse("", "binary_not_supported", "frames are JSON text")
			continue
		}
		// Read up to one byte past the protocol limit, so an oversize frame
		// is detected, discarded and answered instead of killing the socket.
		data, err := io.ReadAll(io.LimitReader(r, int64(c.h.cfg.MaxFrameBytes)+1))
		if err == nil && len(data) > c.h.cfg.MaxFrameBytes {
			_, err = io.Copy(io.Discard, r)
			if err == nil {
				c.refuse("", "frame_too_large", "frames are limited to "+itoa(c.h.cfg.MaxFrameBytes)+" bytes")
				continue
			}
		}
		if err != nil {
			c.closeAfterReadError(err)
			return
		}
		c.handle(data)
	}
}

func (c *conn) closeAfterReadError(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		c.closeLingering(websocket.CloseMessageTooBig, "frame over the hard limit")
	case errors.As(err, &ce):
		// Echo the client's close.
		c.close(websocket.CloseNormalClosure, "")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.close(websocket.CloseGoingAway, "no heartbeat")
		} else {
			c.close(websocket.CloseAbnormalClosure, "read failed")
		}
	}
}

// refuse answers a refused frame with an error frame. A client refused
// faster than its strike budget allows is abusing the socket and is closed.
func (c *conn) refuse(ref, code, message string) {
	if !c.strikes.Allow() {
		c.close(api.ClosePolicy, "too many refused frames")
		return
	}
	c.sendError(code, message, ref)
}

// refuseErr answers a refused frame with an *apierror.Error's code.
func (c *conn) refuseErr(ref string, err error) {
	if e, ok := apierror.As(err); ok {
		c.refuse(ref, e.Code, e.Message)
		return
	}
	c.h.log.Warn("frame failed", "user_id", c.userID, "err", err)
	c.refuse(ref, "unavailable", "try again later")
}

// join adds the connection to room r at cursor seq; r.mu is held. A
// connection behind the room's head catches up from the message service.
func (c *conn) join(r *room, seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cr, ok := c.rooms[r.id]; ok && cr.room == r {
		return
	}
	cr := &cursor{room: r, seq: seq}
	c.rooms[r.id] = cr
	if c.live && seq < r.head.Load() {
		c.startSync(r.id, cr)
	}
}

// leave removes the connection from room r; r.mu is held.
func (c *conn) leave(r *room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cr, ok := c.rooms[r.id]; ok && cr.room == r {
		delete(c.rooms, r.id)
	}
}

// member reports whether the connection is in roomID.
func (c *conn) member(roomID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.rooms[roomID]
	return ok
}

// offer delivers a live event of a room (encoded in b) if it is the next
// one this connection needs. Older seqs are duplicates and are skipped; a
// newer one means the connection missed something, and it catches up from
// the message service instead.
func (c *conn) offer(roomID string, seq int64, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr := c.rooms[roomID]
	if cr == nil || !c.live || cr.syncing {
		return
	}
	switch {
	case seq <= cr.seq:
	case seq == cr.seq+1:
		cr.seq = seq
		c.send(b)
	default:
		c.startSync(roomID, cr)
	}
}

// offerSignal delivers an ephemeral frame to a live connection.
func (c *conn) offerSignal(b []byte) {
	c.mu.Lock()
	live := c.live
	c.mu.Unlock()
	if live {
		c.send(b)
	}
}

// goLive starts live delivery: every room whose head moved past the
// connection's cursor catches up first.
func (c *conn) goLive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		return
	}
	c.live = true
	if c.hold != nil {
		c.hold.Stop()
	}
	for id, cr := range c.rooms {
		if !cr.syncing && cr.seq < cr.room.head.Load() {
			c.startSync(id, cr)
		}
	}
}

// startSync starts a catch-up of one room; c.mu is held.
func (c *conn) startSync(roomID string, cr *cursor) {
	cr.syncing = true
	c.h.spawn(func() { c.sync(roomID, cr) })
}

// sync fetches the events of roomID after the connection's cursor from the
// message service and sends them in order, until the cursor reaches the
// room's head on this replica; from then on live events flow again. Live
// events offered meanwhile were skipped, and the fetch covers them.
func (c *conn) sync(roomID string, cr *cursor) {
	failures := 0
	for {
		c.mu.Lock()
		if c.rooms[roomID] != cr {
			c.mu.Unlock()
			return
		}
		after := cr.seq
		c.mu.Unlock()

		evs, err := c.h.deps.Messages.EventsAfter(c.ctx, roomID, after, c.h.cfg.HistoryPage)
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			switch apierror.KindOf(err) {
			case apierror.Forbidden, apierror.NotFound:
				// The user is no longer in the room (or it is gone).
				c.h.rooms.detach(roomID, c)
				return
			}
			failures++
			c.h.log.Warn("catch-up fetch failed", "room_id", roomID, "user_id", c.userID, "attempt", failures, "err", err)
			if failures >= 5 {
				c.close(websocket.CloseInternalServerErr, "history unavailable; reconnect and resume")
				return
			}
			if !sleep(c.ctx, time.Duration(failures)*200*time.Millisecond) {
				return
			}
			continue
		}

		left := false
		c.mu.Lock()
		if c.rooms[roomID] != cr {
			c.mu.Unlock()
			return
		}
		for _, e := range evs {
			if e.Seq != cr.seq+1 {
				continue
			}
			cr.seq = e.Seq
			c.send(encode(api.EventFrame{Type: api.FrameEvent, Event: e}))
			if e.Type == api.EventMemberLeft && e.UserID == c.userID {
				left = true
				break
			}
		}
		done := len(evs) < c.h.cfg.HistoryPage && cr.seq >= cr.room.head.Load()
		if done && !left {
			cr.syncing = false
		}
		c.mu.Unlock()
		if left {
			c.h.rooms.detach(roomID, c)
			return
		}
		if done {
			return
		}
		if len(evs) == 0 || evs[len(evs)-1].Seq <= after {
			// The room's head here is ahead of what the message service
			// returns yet (a read replica lagging): wait a little.
			if !sleep(c.ctx, 50*time.Millisecond) {
				return
			}
		}
	}
}

// addPending records a send awaiting its ack; false when too many are.
func (c *conn) addPending(roomID, clientID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.pending) >= c.h.cfg.PendingAcks {
		// Sends never answered (lost in a failure) must not fill the
		// table forever.
		for k, at := range c.pending {
			if now.Sub(at) > time.Minute {
				delete(c.pending, k)
			}
		}
		if len(c.pending) >= c.h.cfg.PendingAcks {
			return false
		}
	}
	c.pending[ackKey{roomID, clientID}] = now
	return true
}

// takePending removes a pending send; true when it was there.
func (c *conn) takePending(roomID, clientID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := ackKey{roomID, clientID}
	_, ok := c.pending[k]
	delete(c.pending, k)
	return ok
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
