package hub

import (
	"sync"
	"time"

	"github.com/papochat/papo/platform/wait"
)

// catchUpWorkers bounds the history fetches of one CatchUp, so a replica
// routing thousands of rooms does not ask for all of them at once.
const catchUpWorkers = 8

// CatchUp brings every room this replica routes up to the message
// service's head. The fan-out subscription calls it when it is open again
// after a break (the sidecar restarted, the broker was away): events
// published meanwhile never come to this replica, and a room that stays
// quiet afterwards would show no seq jump to notice them by. A second
// pass a second later covers events published while the broker
// subscription was still being set up. Senders whose events it recovers
// get their ack.
func (h *Hub) CatchUp() {
	h.stats.CatchUps.Add(1)
	h.spawn(func() {
		h.catchUpAll()
		if wait.For(h.ctx, time.Second) {
			h.catchUpAll()
		}
	})
}

// catchUpAll catches up every routed room, catchUpWorkers at a time.
func (h *Hub) catchUpAll() {
	work := make(chan *room)
	var wg sync.WaitGroup
	for range catchUpWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				h.catchUp(r)
			}
		}()
	}
	for _, r := range h.rooms.all() {
		select {
		case work <- r:
		case <-h.ctx.Done():
		}
	}
	close(work)
	wg.Wait()
}

// catchUp fetches the events of r after the replica's head until none is
// left, delivering them like fan-out events.
func (h *Hub) catchUp(r *room) {
	failures := 0
	for h.ctx.Err() == nil {
		r.mu.Lock()
		dead, after := r.dead, r.head.Load()
		r.mu.Unlock()
		if dead {
			return
		}
		evs, err := h.deps.Messages.EventsAfter(h.ctx, r.id, after, h.cfg.HistoryPage)
		if err != nil {
			failures++
			if failures >= 5 {
				h.log.Warn("catch-up after a subscription break failed", "room_id", r.id, "after", after, "err", err)
				return
			}
			if !wait.For(h.ctx, time.Duration(failures)*200*time.Millisecond) {
				return
			}
			continue
		}
		r.mu.Lock()
		for _, e := range evs {
			if e.Seq > r.head.Load() {
				r.pending[e.Seq] = e
			}
		}
		h.drain(r)
		r.mu.Unlock()
		h.ackAll(r.id, evs)
		if len(evs) < h.cfg.HistoryPage {
			return
		}
	}
}
