package hub

import (
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/wait"
)

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
			if !wait.For(c.ctx, time.Duration(failures)*200*time.Millisecond) {
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
			if !wait.For(c.ctx, 50*time.Millisecond) {
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
