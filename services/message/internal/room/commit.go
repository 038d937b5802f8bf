package room

import (
	"context"
	"errors"
	"fmt"

	"github.com/papochat/papo/platform/statestore"
)

// commitHeads writes the new heads of changed, each guarded by the ETag
// its decision was read with, and marks which committed. Several heads go
// in one transaction. A transaction that fails may still have written
// some heads (on Redis a failed ETag check does not undo the other
// operations), so the heads are read again: one that carries this round's
// commit token was written. The others are tried one by one, so a room
// that lost a race (ETag conflict) cannot hold up the rest; its
// submissions are returned to be decided again in the next round.
func (w *writer) commitHeads(ctx context.Context, changed []*roomRound) (requeue []*queued, token string) {
	if len(changed) == 0 {
		return nil, ""
	}
	token = newCommitToken()
	// Pending before the write: a round that reads the head must not
	// find it neither pending nor materialized.
	w.setPending(token, true)
	ops := make([]statestore.Op, len(changed))
	for i, rr := range changed {
		rr.d.next.Commit = token
		ops[i] = guarded(rr.headIt, rr.d.next)
	}
	// A materialization waiting for a round rides along (ride.go): its
	// writes are idempotent and land with the heads or are written later.
	r := w.takeRide()
	var err error
	switch {
	case r != nil:
		// Bounded like any write of events (see erase.go).
		wctx, cancel := context.WithTimeout(ctx, materializeTimeout)
		err = w.s.store.Transact(wctx, append(ops, r.ops...))
		cancel()
		r.settle(err)
	case len(ops) == 1:
		err = w.s.store.Write(ctx, ops[0])
	default:
		err = w.s.store.Transact(ctx, ops)
	}
	if err == nil {
		for _, rr := range changed {
			rr.committed = true
		}
		return nil, token
	}
	rest := changed
	if len(changed) > 1 || !errors.Is(err, statestore.ErrConflict) {
		// (One head with a ride: a conflict is the head's own ETag, so
		// that head did not land.)
		// Which heads did land?
		rest = w.uncommitted(ctx, changed, token, err)
	}
	if len(changed) > 1 {
		eachRoom(rest, func(rr *roomRound) {
			switch err := w.s.store.Write(ctx, guarded(rr.headIt, rr.d.next)); {
			case err == nil:
				rr.committed = true
			case errors.Is(err, statestore.ErrConflict):
			default:
				rr.failed = fmt.Errorf("commit room %s: %w", rr.id, err)
			}
		})
	} else if !errors.Is(err, statestore.ErrConflict) {
		for _, rr := range rest {
			rr.failed = fmt.Errorf("commit room %s: %w", rr.id, err)
		}
	}
	for _, rr := range rest {
		if rr.committed || rr.failed != nil {
			continue
		}
		// Lost the race: decide again from the new head.
		w.s.metrics.conflicts.Inc()
		for _, q := range rr.subs {
			q.attempts++
			if q.attempts >= maxAttempts {
				w.s.log.WarnContext(ctx, "gave up after etag conflicts", "room_id", rr.id, "attempts", q.attempts)
				rr.failed = errBusy
			}
		}
		if rr.failed == nil {
			requeue = append(requeue, rr.subs...)
			rr.subs = nil
		}
	}
	return requeue, token
}

// uncommitted reads the heads of changed again and returns those that do
// not carry token (marking the others committed). When the read fails,
// nothing is known: every room fails with cause.
func (w *writer) uncommitted(ctx context.Context, changed []*roomRound, token string, cause error) []*roomRound {
	keys := make([]string, len(changed))
	for i, rr := range changed {
		keys[i] = roomKey(rr.id)
	}
	items, err := w.s.bulkGet(ctx, keys...)
	if err != nil {
		for _, rr := range changed {
			rr.failed = fmt.Errorf("commit room %s: %w (and reading it back: %v)", rr.id, cause, err)
		}
		return nil
	}
	var rest []*roomRound
	for i, rr := range changed {
		var head roomRecord
		if items[i].Found() && decode(items[i], &head) == nil && head.Commit == token && head.LastSeq == rr.d.next.LastSeq {
			rr.committed = true
			continue
		}
		rest = append(rest, rr)
	}
	return rest
}
