package hub

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/wait"
)

// submitter hands the replica's submissions to the message service, which
// stores them in rounds (docs/message.md): it calls the message service's
// submit route directly (Messages.Submit) with everything that queued up,
// keeps up to maxInflight calls in flight, and never has two calls in
// flight for one room, so a room's submissions from this replica are
// stored in the order they were sent. At low load a call carries one
// submission and waits for nothing; under load the calls grow while
// earlier ones are in flight, and the message service commits what
// arrives together in one round.
//
// A call's answer says what became of each submission. A refusal is told
// to the sender at once; a stored submission's ack follows its event on
// room.events (so a sender sees its message before the confirmation). A
// call that fails is repeated, with the same client ids, a few times;
// if the message service stays unreachable the batch is published to
// messages.submitted instead, where the broker keeps it until a message
// replica takes it, and the acks then come back on room.events as well.
// Only when that publish fails too are the senders told `unavailable`.
type submitter struct {
	h           *Hub
	in          chan outgoing
	max         int
	maxInflight int
	retries     []time.Duration

	// waiting counts submissions not yet in a call.
	waiting atomic.Int64

	quit chan struct{}
	done chan struct{}
}

// submitRetries are the pauses before the repeats of a failed call.
var submitRetries = []time.Duration{50 * time.Millisecond, 250 * time.Millisecond, time.Second}

func newSubmitter(h *Hub, size, max, maxInflight int) *submitter {
	s := &submitter{
		h: h, in: make(chan outgoing, size), max: max, maxInflight: maxInflight, retries: submitRetries,
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	h.workers.Add(1)
	go func() {
		defer h.workers.Done()
		s.run()
	}()
	return s
}

// add queues a submission; false when the queue is full or stopped.
func (s *submitter) add(o outgoing) bool {
	select {
	case <-s.quit:
		return false
	default:
	}
	select {
	case s.in <- o:
		s.waiting.Add(1)
		return true
	default:
		return false
	}
}

// stop hands over what is queued, waits for the calls in flight, then
// ends the submitter.
func (s *submitter) stop() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
}

func (s *submitter) run() {
	defer close(s.done)
	var waiting []outgoing
	busy := map[string]bool{} // rooms with a call in flight
	inflight := 0
	finished := make(chan []outgoing, s.maxInflight)
	quit := s.quit
	stopping := false
	for {
		// Start calls while there is room: each takes, in order, the
		// waiting submissions of rooms not in flight (a room's later
		// submissions wait behind its earlier ones).
		for inflight < s.maxInflight && len(waiting) > 0 {
			var batch, rest []outgoing
			held := map[string]bool{}
			for _, o := range waiting {
				room := o.sub.RoomID
				if busy[room] || held[room] || len(batch) >= s.max {
					held[room] = true
					rest = append(rest, o)
					continue
				}
				batch = append(batch, o)
			}
			if len(batch) == 0 {
				break
			}
			for _, o := range batch {
				busy[o.sub.RoomID] = true
			}
			waiting = rest
			s.waiting.Add(-int64(len(batch)))
			inflight++
			go func() {
				s.deliver(batch)
				finished <- batch
			}()
		}
		if stopping && inflight == 0 && len(waiting) == 0 && len(s.in) == 0 {
			return
		}
		select {
		case o := <-s.in:
			waiting = append(waiting, o)
			// Take whatever else is queued without waiting.
			for more := true; more; {
				select {
				case o := <-s.in:
					waiting = append(waiting, o)
				default:
					more = false
				}
			}
		case batch := <-finished:
			inflight--
			for _, o := range batch {
				delete(busy, o.sub.RoomID)
			}
		case <-quit:
			stopping = true
			quit = nil // a nil channel: this case is never chosen again
		}
	}
}

// deliver hands one batch over and tells the senders of refusals.
func (s *submitter) deliver(batch []outgoing) {
	h := s.h
	subs := events.SubmissionBatch{Submissions: make([]events.Submission, len(batch))}
	for i, o := range batch {
		subs.Submissions[i] = o.sub
	}
	var res events.SubmitResult
	var err error
	sctx, span := h.startSubmit(batch)
	start := time.Now()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(sctx, 10*time.Second)
		res, err = h.deps.Messages.Submit(ctx, subs)
		cancel()
		if err == nil && len(res.Outcomes) != len(batch) {
			err = errors.New("the message service answered a different number of outcomes")
		}
		if err == nil || attempt >= len(s.retries) || h.ctx.Err() != nil {
			break
		}
		if !wait.For(h.ctx, s.retries[attempt]) {
			break
		}
	}
	h.stats.Submitted.Add(int64(len(batch)))
	defer h.endSubmit(span, batch, start, res, err)
	if err != nil {
		h.log.WarnContext(sctx, "hand submissions to the message service; publishing them instead", "count", len(batch), "err", err)
		ctx, cancel := context.WithTimeout(sctx, 10*time.Second)
		_ = h.publishSubmissions(ctx, batch) // tells the senders when it fails
		cancel()
		return
	}
	h.stats.Published.Add(1)
	for i, o := range batch {
		if out := res.Outcomes[i]; out.Code != "" {
			h.reject(events.Rejection{RoomID: o.sub.RoomID, SenderID: o.sub.SenderID, ClientID: o.sub.ClientID,
				Code: out.Code, Message: out.Message})
		}
	}
}
