package room

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/telemetry"
)

// committedRound is what a round hands to the announcer and the
// materializer.
type committedRound struct {
	token string
	// sc is the round's span: the announcer's and the materializer's
	// spans continue it.
	sc trace.SpanContext
	// stored are the rooms whose heads the round committed.
	stored []*roomRound
	// batch is what to announce; dead what to dead-letter.
	batch events.RoomEventBatch
	dead  []DeadLetter
	// announced settles the callers that wait for the announcement.
	announced func(error)
	// flushMarks, on a materializer job of its own, has the owed
	// markers written (markers.go).
	flushMarks bool
}

// finish settles a round: callers that do not wait for the announcement
// are answered at once (what they asked is durable or refused), and the
// round goes to the announcer and, when it committed anything, the
// materializer.
func (w *writer) finish(rooms []*roomRound, refused []refusal, token string, now time.Time, sc trace.SpanContext) {
	c := &committedRound{token: token, sc: sc}
	w.s.metrics.settled(outcomeRefused, len(refused))
	for _, rr := range rooms {
		w.s.metrics.roomSettled(rr)
	}
	for _, rf := range refused {
		sub := rf.q.req.subs[rf.q.i]
		if rf.q.req.announce {
			c.batch.Rejections = append(c.batch.Rejections, events.Rejection{RoomID: sub.RoomID, SenderID: sub.SenderID,
				ClientID: sub.ClientID, Code: rf.code, Message: rf.message})
		}
		c.dead = append(c.dead, DeadLetter{Submission: &sub, Code: rf.code, Message: rf.message, RejectedAt: now})
	}
	for _, rr := range rooms {
		if rr.failed != nil || len(rr.subs) == 0 || (rr.d.changed && !rr.committed) {
			continue
		}
		visible := rr.head
		if rr.committed {
			w.s.committed(rr.id)
			visible = rr.d.next
			c.stored = append(c.stored, rr)
		}
		for _, rec := range rr.replayed {
			c.batch.Events = append(c.batch.Events, visible.visible(rec.Event))
		}
		if rr.committed {
			for _, rec := range rr.d.next.Tail.Events[len(rr.carry.Events):] {
				c.batch.Events = append(c.batch.Events, visible.visible(rec.Event))
			}
		}
		c.batch.Acks = append(c.batch.Acks, rr.d.acks...)
		for _, rj := range rr.d.rejected {
			for _, q := range rr.subs {
				sub := q.req.subs[q.i]
				if q.req.announce && sub.SenderID == rj.SenderID && sub.ClientID == rj.ClientID {
					c.batch.Rejections = append(c.batch.Rejections, rj)
					break
				}
			}
		}
		c.dead = append(c.dead, rr.d.dead...)
	}

	settle := func(announcing bool, announceErr error) {
		for _, rf := range refused {
			if rf.q.req.announce == announcing {
				rf.q.req.settle(rf.q.i, Outcome{Code: rf.code, Message: rf.message}, announceErr)
			}
		}
		for _, rr := range rooms {
			for j, q := range rr.subs {
				if q.req.announce != announcing {
					continue
				}
				if rr.failed != nil {
					q.req.settle(q.i, Outcome{}, fmt.Errorf("append to room %s: %w", rr.id, rr.failed))
				} else {
					q.req.settle(q.i, rr.d.outcomes[j], announceErr)
				}
			}
		}
	}
	settle(false, nil)
	c.announced = func(err error) { settle(true, err) }
	w.announcer.push(c)
	if len(c.stored) > 0 {
		w.materializer.push(c)
	} else if token != "" {
		w.setPending(token, false)
	}
}

// maxAnnounceBytes bounds one publish on room.events (brokers cap a
// message: NATS and Kafka at 1 MB by default); larger announcements are
// split between rooms, or within a room in seq order.
const maxAnnounceBytes = 256 << 10

// announce publishes committed rounds in commit order: everything that
// waits goes in as few publishes as the size bound allows. A failed
// publish is retried briefly (announceRetries); then it is logged, and
// callers that wait for the announcement get the error (the broker
// redelivers their submissions, whose repeat announces them again).
// Every batch carries the trace context of the call's span, which
// continues the first round's trace (pipelineStage).
func (w *writer) announce(rounds []*committedRound) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	ctx, announced := w.pipelineStage(ctx, stageAnnounce, rounds)
	defer announced()
	var merged events.RoomEventBatch
	var dead []DeadLetter
	for _, c := range rounds {
		merged.Events = append(merged.Events, c.batch.Events...)
		merged.Acks = append(merged.Acks, c.batch.Acks...)
		merged.Rejections = append(merged.Rejections, c.batch.Rejections...)
		dead = append(dead, c.dead...)
	}
	var err error
	for _, b := range splitAnnouncement(merged, maxAnnounceBytes) {
		if ids := roomsOf(b); len(ids) == 1 {
			b.RoomID = ids[0]
		}
		b.TraceParent = telemetry.TraceParent(ctx)
		if e := w.s.announce(ctx, b); e != nil {
			err = e
		}
	}
	if err != nil {
		w.s.log.ErrorContext(ctx, "announce room events", "rounds", len(rounds), "err", err)
		err = fmt.Errorf("announce: %w", err)
	}
	w.s.metrics.deadLetters.Add(float64(len(dead)))
	for _, d := range dead {
		if e := w.s.pub.Publish(ctx, events.TopicDeadLetter, d); e != nil {
			w.s.log.WarnContext(ctx, "dead-letter a submission", "room_id", d.Submission.RoomID, "err", e)
		}
	}
	for _, c := range rounds {
		c.announced(err)
	}
}

// splitAnnouncement cuts b into batches of about max bytes at most,
// keeping each room's events in order (a room's events are split only
// when they alone exceed max).
func splitAnnouncement(b events.RoomEventBatch, max int) []events.RoomEventBatch {
	size := func(n int) int { return n + 160 } // an event's JSON besides its text and ids
	total := 0
	for _, e := range b.Events {
		total += size(contentSize(e) + len(e.ClientID) + len(e.SenderID))
	}
	if total <= max {
		return []events.RoomEventBatch{b}
	}
	var out []events.RoomEventBatch
	cur, n := events.RoomEventBatch{}, 0
	for _, e := range b.Events {
		sz := size(contentSize(e) + len(e.ClientID) + len(e.SenderID))
		if n > 0 && n+sz > max {
			out = append(out, cur)
			cur, n = events.RoomEventBatch{}, 0
		}
		cur.Events = append(cur.Events, e)
		n += sz
	}
	// Acks and rejections go with the last batch: after every event, as
	// each ack follows its event.
	cur.Acks, cur.Rejections = b.Acks, b.Rejections
	return append(out, cur)
}

func roomsOf(b events.RoomEventBatch) []string {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, e := range b.Events {
		add(e.RoomID)
	}
	for _, a := range b.Acks {
		add(a.RoomID)
	}
	for _, r := range b.Rejections {
		add(r.RoomID)
	}
	return ids
}
