package hub

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
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

// conn is one WebSocket. Exactly one goroutine reads it (readLoop), and at
// most one writes it (writeLoop), started when frames are queued and gone
// when the queue is empty; everything else only pushes to its queue, so a
// slow client never blocks a producer. Pings go out from a timer.
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

	lastSeen  atomic.Int64 // unix nanos of the client's last frame or pong
	readErr   error        // why reading a frame failed; the reader's only
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
	pending map[ackKey]time.Time // sends awaiting their ack; made on the first
	expiry  *time.Timer
	hold    *time.Timer // nil once live
	ping    *time.Timer
}

type ackKey struct{ room, clientID string }

func (h *Hub) newConn(userID, sessionID string) *conn {
	ctx, cancel := context.WithCancel(h.ctx)
	c := &conn{
		h:          h,
		userID:     userID,
		sessionID:  sessionID,
		ctx:        ctx,
		cancel:     cancel,
		limiter:    rate.NewLimiter(rate.Limit(h.cfg.Rate), h.cfg.Burst),
		strikes:    rate.NewLimiter(rate.Limit(h.cfg.StrikeRate), h.cfg.StrikeBurst),
		writerDone: make(chan struct{}),
		rooms:      map[string]*cursor{},
	}
	c.out = newQueue(h.cfg.QueueBytes, func() { go c.writeLoop() })
	return c
}

// send queues one encoded frame. A full queue disconnects the client: the
// producer never waits for it.
func (c *conn) send(f frame) {
	if c.out.push(f) == overflow {
		c.h.stats.SlowConsumers.Add(1)
		c.close(api.CloseSlowConsumer, "outgoing queue overflowed")
	}
}

func (c *conn) sendError(code, message, ref string) {
	c.h.metrics.refused(code)
	c.send(frame{b: encode(api.ErrorFrame{Type: api.FrameError, Code: code, Message: message, Ref: ref}), kind: outError})
}

// close starts closing the connection with a close code. It never blocks
// and may be called from any goroutine, any number of times: the writer
// sends the close frame, and if the writer is stuck on a slow client the
// socket is closed under it after a second.
func (c *conn) close(code int, text string) { c.shut(code, text, false) }

func (c *conn) shut(code int, text string, linger bool) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText, c.linger = code, text, linger
		c.h.metrics.closed(code)
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

// writeLoop sends queued frames until the queue is empty (the next push
// starts it again), closed (it sends the close frame) or a write fails.
func (c *conn) writeLoop() {
	for {
		frames, closed, more := c.out.take()
		if !more {
			return
		}
		if closed {
			deadline := time.Now().Add(time.Second)
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.closeText), deadline)
			c.writerEnded()
			return
		}
		for _, f := range frames {
			if err := c.write(f.b); err != nil {
				c.writerEnded()
				return
			}
			c.h.metrics.wrote(f)
		}
	}
}

// writerEnded records that nothing will be written on the socket again.
func (c *conn) writerEnded() {
	c.out.end()
	close(c.writerDone)
}

// write sends one frame within the write deadline.
func (c *conn) write(b []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	err := c.ws.WriteMessage(websocket.TextMessage, b)
	if err != nil {
		c.writeFailed(err)
	}
	return err
}

// writeFailed closes the connection after a failed write. A missed
// deadline means the client does not read fast enough: it is cut off as a
// slow consumer.
func (c *conn) writeFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.h.stats.SlowConsumers.Add(1)
		c.close(api.CloseSlowConsumer, "write deadline missed")
	} else {
		c.close(websocket.CloseAbnormalClosure, "write failed")
	}
	_ = c.ws.Close()
}

// startPings sends a heartbeat ping every PingInterval from a timer.
// WriteControl may run beside the writer (gorilla serializes them), so a
// ping needs no writer goroutine of its own.
func (c *conn) startPings() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ping = time.AfterFunc(c.h.cfg.PingInterval, c.sendPing)
}

func (c *conn) sendPing() {
	if c.ctx.Err() != nil {
		return // closing
	}
	if time.Since(time.Unix(0, c.lastSeen.Load())) > c.h.cfg.PongWait {
		c.close(websocket.CloseGoingAway, "no heartbeat")
		return
	}
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.h.cfg.WriteTimeout)); err != nil {
		if c.ctx.Err() == nil {
			c.writeFailed(err)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() == nil {
		c.ping.Reset(c.h.cfg.PingInterval)
	}
}

// readLoop reads client frames until the socket fails or closes.
//
// An idle socket costs mostly its reader's stack, so the reader keeps it
// small: the runtime starts a goroutine with about the average stack in
// use, and halves a stack only when three quarters of it are unused, so
// a reader that once went deep keeps a large stack for the socket's whole
// life. Each frame is therefore handled on a goroutine of its own
// (inline: JSON and upstream calls need several KiB), and the heartbeat
// is a timestamp the ping timer checks, not a read deadline renewed from
// here (deep in the runtime's timers).
func (c *conn) readLoop() {
	c.startReading()
	for {
		// The reader waits here: this frame is on the stack the whole time.
		kind, r, err := c.ws.NextReader()
		if err != nil || !c.readFrame(kind, r) {
			c.closeAfterReadError(err)
			return
		}
	}
}

// startReading sets the read limit and the heartbeat handlers.
func (c *conn) startReading() {
	c.ws.SetReadLimit(c.h.cfg.HardFrameBytes)
	c.ws.SetPongHandler(func(string) error { c.seen(); return nil })
	c.ws.SetPingHandler(func(data string) error {
		c.seen()
		inline(func() {
			_ = c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		return nil
	})
}

// readFrame reads one client frame and has it handled; false when the
// socket failed reading it (c.readErr says why).
func (c *conn) readFrame(kind int, r io.Reader) bool {
	c.seen()
	if kind != websocket.TextMessage {
		if _, err := io.Copy(io.Discard, r); err != nil {
			c.readErr = err
			return false
		}
		inline(func() { c.refuse("", "binary_not_supported", "frames are JSON text") })
		return true
	}
	// Read up to one byte past the protocol limit, so an oversize frame
	// is detected, discarded and answered instead of killing the socket.
	data, err := io.ReadAll(io.LimitReader(r, int64(c.h.cfg.MaxFrameBytes)+1))
	if err == nil && len(data) > c.h.cfg.MaxFrameBytes {
		if _, err = io.Copy(io.Discard, r); err == nil {
			inline(func() {
				c.refuse("", "frame_too_large", "frames are limited to "+itoa(c.h.cfg.MaxFrameBytes)+" bytes")
			})
			return true
		}
	}
	if err != nil {
		c.readErr = err
		return false
	}
	inline(func() { c.handle(data) })
	return true
}

// inline runs f on a goroutine of its own and waits for it, so that f's
// stack goes away with it (see readLoop).
func inline(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// seen records that the client is alive: a frame or a pong came.
func (c *conn) seen() { c.lastSeen.Store(time.Now().UnixNano()) }

func (c *conn) closeAfterReadError(err error) {
	if err == nil {
		err = c.readErr
	}
	var ce *websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		c.closeLingering(websocket.CloseMessageTooBig, "frame over the hard limit")
	case errors.As(err, &ce):
		// Echo the client's close.
		c.close(websocket.CloseNormalClosure, "")
	default:
		c.close(websocket.CloseAbnormalClosure, "read failed")
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

// offer delivers a live event of a room (encoded in f) if it is the next
// one this connection needs. Older seqs are duplicates and are skipped; a
// newer one means the connection missed something, and it catches up from
// the message service instead.
func (c *conn) offer(roomID string, seq int64, f frame) {
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
		c.send(f)
	default:
		c.startSync(roomID, cr)
	}
}

// offerSignal delivers an ephemeral frame (typing, presence) at once. The
// live hold is for room events, whose order a resume decides; a signal
// has none, and one held back would be lost.
func (c *conn) offerSignal(f frame) { c.send(f) }

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
		c.hold = nil
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
			c.send(frame{b: encode(api.EventFrame{Type: api.FrameEvent, Event: e}), kind: outEvent})
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
	if c.pending == nil {
		c.pending = map[ackKey]time.Time{}
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
