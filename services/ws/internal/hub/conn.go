package hub

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/papochat/papo/api"
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
