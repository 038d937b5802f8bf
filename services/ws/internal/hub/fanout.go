package hub

import (
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/wait"
)

// RoomEvents handles one batch from the fan-out topic: it delivers the
// events to the room's local connections (deduplicated by seq, gaps filled
// from the message service first), then acks or refuses the senders.
func (h *Hub) RoomEvents(b events.RoomEventBatch) {
	if span := h.startDeliver(b); span != nil {
		defer span.End()
	}
	h.metrics.batchArrived(b.Events)
	byRoom := map[string][]api.Event{}
	var order []string
	for _, e := range b.Events {
		if e.RoomID == "" {
			e.RoomID = b.RoomID
		}
		if _, ok := byRoom[e.RoomID]; !ok {
			order = append(order, e.RoomID)
		}
		byRoom[e.RoomID] = append(byRoom[e.RoomID], e)
	}
	for _, id := range order {
		h.accept(id, byRoom[id])
	}
	// The ack follows the event, so a sender sees its message in the room
	// before (or with) the confirmation.
	for _, e := range b.Events {
		if e.ClientID != "" && e.SenderID != "" {
			h.ack(e.SenderID, e.RoomID, e.ClientID, e.Seq)
		}
	}
	for _, a := range b.Acks {
		h.ack(a.SenderID, a.RoomID, a.ClientID, a.Seq)
	}
	for _, rj := range b.Rejections {
		h.reject(rj)
	}
}

// accept takes persisted events of one room into its delivery state.
func (h *Hub) accept(roomID string, evs []api.Event) {
	r := h.rooms.get(roomID)
	if r == nil {
		// A member joining starts routing a room this replica had no
		// connection in.
		for _, e := range evs {
			if e.Type == api.EventMemberJoined && h.users.count(e.UserID) > 0 {
				r = h.rooms.ensure(roomID, e.Seq-1)
				break
			}
		}
		if r == nil {
			return
		}
	}
	r.mu.Lock()
	if r.dead {
		// Dropped between get and lock: the replica routes the room no
		// more, unless a member joined, which the next get sees.
		r.mu.Unlock()
		if r2 := h.rooms.get(roomID); r2 != nil && r2 != r {
			h.accept(roomID, evs)
		}
		return
	}
	head := r.head.Load()
	for _, e := range evs {
		if e.Seq > head {
			r.pending[e.Seq] = e
		}
	}
	h.drain(r)
	if len(r.pending) > 0 && !r.fetching {
		r.fetching = h.spawn(func() { h.fill(r) })
	}
	empty := len(r.conns) == 0
	r.mu.Unlock()
	if empty {
		h.rooms.release(r)
	}
}

// drain delivers the pending events that follow the room's head, in seq
// order; r.mu is held. Membership events change the routing as they pass:
// a joining user's connections receive their own member_joined, a leaving
// user's receive their member_left and nothing after.
func (h *Hub) drain(r *room) {
	for {
		next := r.head.Load() + 1
		e, ok := r.pending[next]
		if !ok {
			return
		}
		delete(r.pending, next)
		if e.Type == api.EventMemberJoined && e.UserID != "" {
			for _, c := range h.users.conns(e.UserID) {
				if _, in := r.conns[c]; !in {
					r.conns[c] = struct{}{}
					c.join(r, e.Seq-1)
				}
			}
		}
		r.head.Store(e.Seq)
		f := frame{b: encode(api.EventFrame{Type: api.FrameEvent, Event: e}), kind: outEvent}
		if !e.CreatedAt.IsZero() {
			f.committed = e.CreatedAt.UnixNano()
		}
		for c := range r.conns {
			c.offer(r.id, e.Seq, f)
		}
		if e.Type == api.EventMemberLeft && e.UserID != "" {
			for _, c := range h.users.conns(e.UserID) {
				if _, in := r.conns[c]; in {
					delete(r.conns, c)
					c.leave(r)
				}
			}
		}
	}
}

// fill fetches a room's missing range from the message service, so that
// events after a gap are delivered only once the gap is closed. After
// repeated failures it gives up on the gap: the connections then see the
// jump themselves and catch up one by one (or are told to reconnect).
func (h *Hub) fill(r *room) {
	failures := 0
	for {
		r.mu.Lock()
		if r.dead || len(r.pending) == 0 || h.ctx.Err() != nil {
			r.fetching = false
			empty := len(r.conns) == 0
			r.mu.Unlock()
			if empty {
				h.rooms.release(r)
			}
			return
		}
		after := r.head.Load()
		r.mu.Unlock()

		evs, err := h.deps.Messages.EventsAfter(h.ctx, r.id, after, h.cfg.HistoryPage)
		h.stats.GapFills.Add(1)

		r.mu.Lock()
		if err == nil {
			for _, e := range evs {
				if e.Seq > r.head.Load() {
					r.pending[e.Seq] = e
				}
			}
			h.drain(r)
			// The acks of the missed events were missed with them: their
			// senders get them now, not after their retry (once: ack takes
			// the pending send).
			r.mu.Unlock()
			h.ackAll(r.id, evs)
			r.mu.Lock()
		}
		progressed := r.head.Load() > after
		if progressed {
			failures = 0
		} else {
			failures++
			if failures >= 5 && len(r.pending) > 0 {
				h.log.Warn("giving up on a room gap", "room_id", r.id, "after", after, "err", err)
				lowest := int64(-1)
				for s := range r.pending {
					if lowest < 0 || s < lowest {
						lowest = s
					}
				}
				r.head.Store(lowest - 1)
				h.drain(r)
				failures = 0
			}
		}
		r.mu.Unlock()
		if !progressed && !wait.For(h.ctx, time.Duration(failures)*100*time.Millisecond) {
			continue // the next round sees ctx done and stops
		}
	}
}

// ackAll acks the senders of events of roomID that this replica holds a
// pending send of.
func (h *Hub) ackAll(roomID string, evs []api.Event) {
	for _, e := range evs {
		if e.ClientID != "" && e.SenderID != "" {
			h.ack(e.SenderID, roomID, e.ClientID, e.Seq)
		}
	}
}

func (h *Hub) ack(userID, roomID, clientID string, seq int64) {
	var b []byte
	for _, c := range h.users.conns(userID) {
		if c.takePending(roomID, clientID) {
			if b == nil {
				b = encode(api.AckFrame{Type: api.FrameAck, ClientID: clientID, RoomID: roomID, Seq: seq})
			}
			c.send(frame{b: b, kind: outAck})
		}
	}
}

func (h *Hub) reject(rj events.Rejection) {
	for _, c := range h.users.conns(rj.SenderID) {
		if c.takePending(rj.RoomID, rj.ClientID) {
			c.sendError(rj.Code, rj.Message, rj.ClientID)
		}
	}
}

// Signals handles one batch from the signals topic.
func (h *Hub) Signals(b events.SignalBatch) {
	for _, s := range b.Signals {
		switch s.Kind {
		case events.SignalTyping:
			f := frame{b: encode(api.TypingFrame{Type: api.FrameTyping, RoomID: s.RoomID, UserID: s.UserID}), kind: outTyping}
			for _, c := range h.roomConns([]string{s.RoomID}, s.UserID) {
				c.offerSignal(f)
			}
		case events.SignalPresence:
			f := frame{b: encode(api.PresenceFrame{Type: api.FramePresence, UserID: s.UserID, Status: s.Status, LastSeen: s.LastSeen}), kind: outPresence}
			for _, c := range h.roomConns(s.RoomIDs, s.UserID) {
				c.offerSignal(f)
			}
		case events.SignalSessionRevoked:
			h.revoke(s.UserID, s.SessionID)
		}
	}
}

// roomConns returns the connections in any of roomIDs, each once, except
// those of user except.
func (h *Hub) roomConns(roomIDs []string, except string) []*conn {
	seen := map[*conn]struct{}{}
	var out []*conn
	for _, id := range roomIDs {
		r := h.rooms.get(id)
		if r == nil {
			continue
		}
		r.mu.Lock()
		for c := range r.conns {
			if _, dup := seen[c]; !dup && c.userID != except {
				seen[c] = struct{}{}
				out = append(out, c)
			}
		}
		r.mu.Unlock()
	}
	return out
}

// SessionRevoked closes the sockets of a revoked session.
func (h *Hub) SessionRevoked(ev events.SessionRevoked) { h.revoke(ev.UserID, ev.SessionID) }

func (h *Hub) revoke(userID, sessionID string) {
	if sessionID == "" {
		return
	}
	closeIt := func(c *conn) {
		if c.sessionID == sessionID {
			c.close(api.CloseSessionRevoked, "session revoked")
		}
	}
	if userID != "" {
		for _, c := range h.users.conns(userID) {
			closeIt(c)
		}
		return
	}
	h.users.each(closeIt)
}
