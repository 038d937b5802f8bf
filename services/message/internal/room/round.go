package room

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// roomRound is one room's part of a round.
type roomRound struct {
	id     string
	subs   []*queued
	items  map[string]statestore.Item // what the round read
	headIt statestore.Item
	head   roomRecord
	// carry is what of the head's tail the store may still lack (see
	// writer): it goes into the new tail.
	carry tail
	d     appendDecision
	// replayed are the events of d.replays.
	replayed  []eventRecord
	committed bool
	failed    error
}

func (rr *roomRound) submissions() []events.Submission {
	out := make([]events.Submission, len(rr.subs))
	for i, q := range rr.subs {
		out[i] = q.req.subs[q.i]
	}
	return out
}

// round commits one batch and returns the submissions to try again (lost
// an ETag race), in order.
func (w *writer) round(ctx context.Context, batch []*queued) (requeue []*queued) {
	s := w.s
	now := s.now().UTC()
	var rooms []*roomRound
	byID := map[string]*roomRound{}
	var refused []refusal
	for _, q := range batch {
		sub := q.req.subs[q.i]
		if err := checkSubmission(sub); err != nil {
			code, msg := rejection(err)
			refused = append(refused, refusal{q, code, msg})
			continue
		}
		rr := byID[sub.RoomID]
		if rr == nil {
			rr = &roomRound{id: sub.RoomID}
			byID[sub.RoomID] = rr
			rooms = append(rooms, rr)
		}
		rr.subs = append(rr.subs, q)
	}

	// 1. One read of everything the round's decisions need.
	var keys []string
	seen := map[string]bool{}
	need := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	// Member keys of senders whose membership this replica knows are
	// left out (membercache.go).
	skip := w.members.skipped(rooms)
	for _, rr := range rooms {
		need(roomKey(rr.id))
		appendKeys(rr.id, rr.submissions(), func(k string) {
			if !skip[k] {
				need(k)
			}
		})
	}
	items := map[string]statestore.Item{}
	if len(keys) > 0 {
		rctx, read := w.timeStage(ctx, stageRead)
		list, err := s.bulkGet(rctx, keys...)
		read()
		if err != nil {
			err = fmt.Errorf("read %d rooms: %w", len(rooms), err)
			for _, rr := range rooms {
				rr.failed = err
			}
			w.finish(rooms, refused, "", now, trace.SpanContextFromContext(ctx))
			return nil
		}
		for _, it := range list {
			items[it.Key] = it
		}
	}

	// 2. Decisions. A head whose tail is not known materialized is either
	// one of this replica's own, whose materialization is on its way (its
	// tail is carried), or is materialized first (in parallel, rooms
	// apart).
	dctx, decided := w.timeStage(ctx, stageDecide)
	var slow []*roomRound
	for _, rr := range rooms {
		rr.items = items
		rr.headIt = items[roomKey(rr.id)]
		if !rr.headIt.Found() {
			for _, q := range rr.subs {
				code, msg := rejection(errRoomNotFound)
				refused = append(refused, refusal{q, code, msg})
			}
			rr.subs = nil
			continue
		}
		if err := decode(rr.headIt, &rr.head); err != nil {
			rr.failed = err
			continue
		}
	}
	// Membership left out of the read: remembered, or read now.
	stale, of := w.members.fill(rooms, items, skip)
	w.readStale(dctx, stale, of, items)
	for _, rr := range rooms {
		if rr.failed != nil || len(rr.subs) == 0 {
			continue
		}
		through, known := w.materialized.Get(rr.id)
		switch {
		case known && through >= rr.head.LastSeq:
		case w.isPending(rr.head.Commit):
			rr.carry = rr.head.Tail.after(max(through, 0))
		default:
			slow = append(slow, rr)
		}
		// Markers not yet written go on in every new tail until they are.
		rr.carry.Marks = mergeMarks(rr.carry.Marks, w.debtOf(rr.id))
	}
	eachRoom(slow, func(rr *roomRound) {
		if err := s.materialize(dctx, rr.head); err != nil {
			rr.failed = err
			return
		}
		w.materializedThrough(rr.id, rr.head.LastSeq)
	})
	for _, rr := range rooms {
		if rr.failed != nil || len(rr.subs) == 0 {
			continue
		}
		d, err := decideAppend(rr.head, rr.carry, items, rr.submissions(), now)
		if err != nil {
			rr.failed = err
			continue
		}
		rr.d = d
	}
	eachRoom(rooms, func(rr *roomRound) {
		if rr.failed != nil || len(rr.subs) == 0 {
			return
		}
		if len(rr.d.replays) > 0 {
			recs, err := s.eventRecords(dctx, rr.head, rr.d.replays)
			if err != nil {
				rr.failed = err
				return
			}
			rr.replayed = recs
		}
		if rr.d.changed && needsTrim(rr.d.next.Deletes, now) {
			rr.d.next.Deletes = s.trimDeletes(dctx, rr.id, rr.d.next.Deletes, now)
		}
	})
	decided()

	// 3. One conditional write of every changed head.
	var changed []*roomRound
	for _, rr := range rooms {
		if rr.failed == nil && len(rr.subs) > 0 && rr.d.changed {
			changed = append(changed, rr)
		}
	}
	cctx, committed := w.timeStage(ctx, stageCommit)
	requeue, token := w.commitHeads(cctx, changed)
	committed()
	w.members.learn(rooms)
	w.finish(rooms, refused, token, now, trace.SpanContextFromContext(ctx))
	return requeue
}

// refusal is a submission refused before its room was decided.
type refusal struct {
	q             *queued
	code, message string
}

// needsTrim reports whether a delete is due to leave the head.
func needsTrim(deletes []deletion, now time.Time) bool {
	return len(deletes) > 0 && now.Sub(deletes[0].At) > keepDeletes
}
