package room

import (
	"context"
	"sync"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/statestore"
)

// materializeRounds writes, for committed rounds in commit order, every
// tail event the store may lack (those after what is known materialized,
// which includes what an earlier failed materialization left) with its
// idempotency key, and the read markers that are due (markers.go), in
// one transaction; then it does what edits and deletes need, room by
// room. When a marker conflicts, the events go alone and each marker moves
// on its own. A failure is logged: the tails stay durable in the heads
// (the rounds are no longer pending, so the next round of a room
// materializes its head before replacing it).
func (w *writer) materializeRounds(rounds []*committedRound) {
	s := w.s
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	defer func() {
		for _, c := range rounds {
			w.setPending(c.token, false)
		}
	}()
	ctx, materialized := w.pipelineStage(ctx, stageMaterialize, rounds)
	defer materialized()

	// The latest committed tail of each room holds everything still
	// unmaterialized (earlier ones were carried into it), and every marker
	// not yet written.
	latest := map[string]roomRecord{}
	var order []string
	flush := false
	for _, c := range rounds {
		for _, rr := range c.stored {
			if _, ok := latest[rr.id]; !ok {
				order = append(order, rr.id)
			}
			latest[rr.id] = rr.d.next
		}
		flush = flush || c.flushMarks
	}
	var ops []statestore.Op
	written := map[string][]eventRecord{}
	for _, id := range order {
		head := latest[id]
		through, _ := w.materialized.Get(id)
		t := head.Tail.after(through)
		for _, e := range t.Events {
			ops = append(ops, statestore.Op{Key: eventKey(id, e.Seq), Value: encode(e)})
		}
		for _, e := range t.Idem {
			ops = append(ops, statestore.Op{Key: idemKey(id, e.SenderID, e.ClientID), Value: encode(idemRecord{Seq: e.Seq})})
		}
		written[id] = t.Events
		w.owe(id, head.Tail.Marks)
	}
	marks := w.dueMarks(s.now(), flush)
	markOps, alone, err := w.markerWrites(ctx, marks)
	if err != nil {
		markOps, alone = nil, marks
	}
	// Without markers to move, the events ride on the next round's head
	// transaction when one comes (ride.go).
	rode := len(ops) > 0 && len(markOps) == 0 && w.rideOn(ctx, ops)
	if rode {
		ops = nil
		w.s.metrics.rode.Inc()
	} else if len(ops) > 0 {
		w.s.metrics.alone.Inc()
	}
	wctx, wcancel := context.WithTimeout(ctx, materializeTimeout)
	err = nil
	if len(ops)+len(markOps) > 0 {
		err = s.store.Transact(wctx, append(ops, markOps...))
	}
	if err != nil && len(markOps) > 0 {
		// A marker moved meanwhile: the events alone, then the markers
		// one by one.
		if err = s.store.Transact(wctx, ops); err == nil {
			alone = marks
		}
	}
	wcancel()
	if err != nil {
		w.unpaid(marks)
		s.log.WarnContext(ctx, "materialize committed rounds", "rounds", len(rounds), "rooms", len(order), "err", err)
		return
	}
	w.unpaid(w.moveMarkers(ctx, alone))
	at := s.now()
	for _, id := range order {
		for _, e := range written[id] {
			s.events.Add(eventKey(id, e.Seq), cachedEvent{rec: e, at: at})
		}
	}
	// Edits and deletes need reads and writes of their own, room by room;
	// rooms without any are done here.
	var edited []string
	for _, id := range order {
		if hasEdits(written[id]) {
			edited = append(edited, id)
			continue
		}
		w.doneMaterializing(id, latest[id])
	}
	eachOf(edited, func(id string) {
		head := latest[id]
		h := head
		h.Tail = tail{Events: written[id]}
		if err := s.materializeEdits(ctx, h); err != nil {
			s.log.WarnContext(ctx, "materialize edits and deletes", "room_id", id, "err", err)
			return
		}
		w.doneMaterializing(id, head)
	})
}

// doneMaterializing records that head's tail is in the store and plans the
// compaction of a large one.
func (w *writer) doneMaterializing(roomID string, head roomRecord) {
	w.materializedThrough(roomID, head.LastSeq)
	if tailSize(head.Tail) > compactTailBytes {
		w.s.compactLater(head)
	}
}

// hasEdits reports whether evs hold an edit or a delete.
func hasEdits(evs []eventRecord) bool {
	for _, e := range evs {
		if e.Type == api.EventEdit || e.Type == api.EventDelete {
			return true
		}
	}
	return false
}

// tailSize estimates a tail's encoded size from its texts and ids, without
// encoding it.
func tailSize(t tail) int {
	n := 0
	for _, e := range t.Events {
		n += 200 + contentSize(e.Event) + len(e.ClientID) + len(e.SenderID) + len(e.ID)
	}
	for _, e := range t.Idem {
		n += 50 + len(e.SenderID) + len(e.ClientID)
	}
	return n + 60*(len(t.Marks)+len(t.Members))
}

// markMove is a read marker to move in a room.
type markMove struct {
	room string
	mk   mark
}

// markerWrites reads the member records of moves and returns the guarded
// writes that move their markers, and the moves whose record is not there
// yet (a join not materialized), to be moved one by one.
func (w *writer) markerWrites(ctx context.Context, moves []markMove) (ops []statestore.Op, alone []markMove, err error) {
	if len(moves) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, len(moves))
	for i, mv := range moves {
		keys[i] = memberKey(mv.room, mv.mk.UserID)
	}
	items, err := w.s.bulkGet(ctx, keys...)
	if err != nil {
		return nil, nil, err
	}
	for i, it := range items {
		var m memberRecord
		if !it.Found() || decode(it, &m) != nil {
			alone = append(alone, moves[i])
			continue
		}
		mk := moves[i].mk
		if !m.In || m.Seq > mk.Seq || m.ReadSeq >= mk.Seq {
			continue
		}
		m.ReadSeq, m.ReadMsgs = mk.Seq, mk.Msgs
		ops = append(ops, statestore.Op{Key: it.Key, Value: encode(m), ETag: it.ETag})
	}
	return ops, alone, nil
}

// moveMarkers moves each marker on its own (a read-modify-write) and
// returns those that failed.
func (w *writer) moveMarkers(ctx context.Context, moves []markMove) (failed []markMove) {
	var mu sync.Mutex
	var last error
	eachOf(moves, func(mv markMove) {
		if err := w.s.advanceMarker(ctx, mv.room, mv.mk); err != nil {
			mu.Lock()
			failed, last = append(failed, mv), err
			mu.Unlock()
		}
	})
	if last != nil {
		w.s.log.WarnContext(ctx, "move read markers", "failed", len(failed), "err", last)
	}
	return failed
}
