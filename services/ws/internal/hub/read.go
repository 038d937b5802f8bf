package hub

import (
	"errors"
	"io"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
)

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
