package room

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/telemetry"
)

// The append path commits in rounds (group commit). Submissions wait in
// one queue per replica; the first caller that finds no round running
// leads: it takes everything queued — submissions of any number of rooms,
// up to maxRound — and commits it in one round, then the next round with
// what queued meanwhile, until the queue is empty. One round costs the
// same few sidecar calls whatever it holds:
//
//  1. one BulkGet of every room's head, the senders' member records, the
//     idempotency keys and the targets of edits and deletes;
//  2. the decisions (decideAppend), without I/O;
//  3. one write of every changed head, each guarded by its ETag (a
//     transaction when there are several; see commitHeads);
//  4. one publish of everything the round stored, in parallel with one
//     transaction that materializes every new tail's events and
//     idempotency keys, and one that moves the senders' read markers.
//
// Every room's order is kept: a room's submissions are taken in queue
// order, and a submission that lost an ETag race goes back to the front of
// the queue. What makes seqs gap-free and unique is unchanged: a head is
// committed only by a write conditioned on the head it was decided from,
// and it is replaced only after its tail is materialized (a head this
// replica did not just materialize is materialized first, as before).
const (
	// maxRound bounds the submissions of one round.
	maxRound = 2048
	// maxPerRound bounds one room's submissions in a round, so that a hot
	// room's tail (read by every history page) stays small.
	maxPerRound = 128
	// materializedRooms bounds how many rooms' materialized seqs a
	// replica remembers; a room it forgot is checked in the store.
	materializedRooms = 100_000
)

// writer queues submissions and commits them in rounds.
type writer struct {
	s *Service

	mu      sync.Mutex
	queue   []*queued
	running bool

	// materialized remembers, per room, the last_seq of the head whose
	// tail this replica materialized: a head still at that seq needs no
	// materialization before it is replaced.
	materialized *lru.Cache[string, int64]
}

// queued is one submission waiting for a round.
type queued struct {
	req      *request
	i        int // index in req.subs
	attempts int
	sc       trace.SpanContext // the caller's, for the round's span
}

// request is one caller's submissions and what became of them.
type request struct {
	subs []events.Submission
	// announce publishes refusals as rejections on room.events and holds
	// the answer until the round's announcement is published: nobody
	// waits for the answer of a pub/sub delivery, so the broker must
	// redeliver when the announcement failed.
	announce bool

	mu       sync.Mutex
	outcomes []Outcome
	left     int
	err      error
	done     chan struct{}
}

func (r *request) settle(i int, o Outcome, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left == 0 {
		return
	}
	r.outcomes[i] = o
	if err != nil && r.err == nil {
		r.err = err
	}
	r.left--
	if r.left == 0 {
		close(r.done)
	}
}

func newWriter(s *Service) *writer {
	m, err := lru.New[string, int64](materializedRooms)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &writer{s: s, materialized: m}
}

// submit appends subs and returns one outcome per submission once every
// one is stored or refused. An error is transient (the store or broker
// failed, or a room stayed contended): retrying the same submissions is
// safe, since those stored already are answered with their seq.
func (w *writer) submit(ctx context.Context, subs []events.Submission, announce bool) ([]Outcome, error) {
	if len(subs) == 0 {
		return nil, nil
	}
	r := &request{subs: subs, announce: announce, outcomes: make([]Outcome, len(subs)), left: len(subs), done: make(chan struct{})}
	start, sc := time.Now(), trace.SpanContextFromContext(ctx)
	defer func() { w.s.metrics.submitTime.Observe(time.Since(start).Seconds()) }()
	w.mu.Lock()
	for i := range subs {
		w.queue = append(w.queue, &queued{req: r, i: i, sc: sc})
	}
	lead := !w.running
	w.running = true
	w.mu.Unlock()
	if lead {
		w.lead()
	}
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.outcomes, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lead runs rounds until the queue is empty. The rounds do not use any
// caller's context: they work for every waiter.
func (w *writer) lead() {
	for {
		w.mu.Lock()
		batch := w.take()
		if len(batch) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		rctx, span := w.roundSpan(batch)
		ctx, cancel := context.WithTimeout(rctx, batchTimeout)
		start := time.Now()
		requeue := w.round(ctx, batch)
		cancel()
		span.End()
		w.s.metrics.roundDone(len(batch), len(requeue), start)
		if len(requeue) > 0 {
			w.mu.Lock()
			w.queue = append(requeue, w.queue...)
			w.mu.Unlock()
		}
	}
}

// take removes the next round's submissions from the queue: in queue
// order, at most maxRound, at most maxPerRound of one room (the rest of
// that room waits, in order, for the next round); w.mu is held.
func (w *writer) take() []*queued {
	var batch, rest []*queued
	perRoom := map[string]int{}
	full := map[string]bool{}
	for _, q := range w.queue {
		room := q.req.subs[q.i].RoomID
		if len(batch) >= maxRound || full[room] {
			rest = append(rest, q)
			continue
		}
		perRoom[room]++
		if perRoom[room] >= maxPerRound {
			full[room] = true
		}
		batch = append(batch, q)
	}
	w.queue = rest
	return batch
}

// roomRound is one room's part of a round.
type roomRound struct {
	id     string
	subs   []*queued
	items  map[string]statestore.Item // what the round read
	headIt statestore.Item
	head   roomRecord
	d      appendDecision
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
	for _, rr := range rooms {
		need(roomKey(rr.id))
		appendKeys(rr.id, rr.submissions(), need)
	}
	items := map[string]statestore.Item{}
	if len(keys) > 0 {
		sctx, done := w.stage(ctx, stageRead)
		list, err := s.bulkGet(sctx, keys...)
		done()
		if err != nil {
			err = fmt.Errorf("read %d rooms: %w", len(rooms), err)
			for _, rr := range rooms {
				rr.failed = err
			}
			return w.finish(ctx, rooms, refused, now)
		}
		for _, it := range list {
			items[it.Key] = it
		}
	}

	// 2. Decisions; a head this replica did not materialize is
	// materialized first (in parallel, rooms apart).
	dctx, decided := w.stage(ctx, stageDecide)
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
		if seq, ok := w.materialized.Get(rr.id); !ok || seq != rr.head.LastSeq {
			slow = append(slow, rr)
		}
	}
	eachRoom(slow, func(rr *roomRound) {
		if err := s.materialize(dctx, rr.head); err != nil {
			rr.failed = err
			return
		}
		w.materialized.Add(rr.id, rr.head.LastSeq)
	})
	for _, rr := range rooms {
		if rr.failed != nil || len(rr.subs) == 0 {
			continue
		}
		d, err := decideAppend(rr.head, items, rr.submissions(), now)
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
	cctx, committed := w.stage(ctx, stageCommit)
	requeue = w.commitHeads(cctx, changed)
	committed()
	return append(requeue, w.finish(ctx, rooms, refused, now)...)
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

// commitHeads writes the new heads of changed, each guarded by the ETag
// its decision was read with, and marks which committed. Several heads go
// in one transaction. A transaction that fails may still have written
// some heads (on Redis a failed ETag check does not undo the other
// operations), so the heads are read again: one that carries this round's
// commit token was written. The others are tried one by one, so a room
// that lost a race (ETag conflict) cannot hold up the rest; its
// submissions are returned to be decided again in the next round.
func (w *writer) commitHeads(ctx context.Context, changed []*roomRound) (requeue []*queued) {
	if len(changed) == 0 {
		return nil
	}
	token := newCommitToken()
	ops := make([]statestore.Op, len(changed))
	for i, rr := range changed {
		rr.d.next.Commit = token
		ops[i] = guarded(rr.headIt, rr.d.next)
	}
	var err error
	if len(ops) == 1 {
		err = w.s.store.Write(ctx, ops[0])
	} else {
		err = w.s.store.Transact(ctx, ops)
	}
	if err == nil {
		for _, rr := range changed {
			rr.committed = true
		}
		return nil
	}
	rest := changed
	if len(changed) > 1 || !errors.Is(err, statestore.ErrConflict) {
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
	return requeue
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

// finish settles a round: it announces what was stored (one publish),
// answers the callers, materializes the new tails and moves the read
// markers. It returns nothing to requeue; its result is for round's
// convenience.
func (w *writer) finish(ctx context.Context, rooms []*roomRound, refused []refusal, now time.Time) []*queued {
	s := w.s
	var batch events.RoomEventBatch
	var dead []DeadLetter
	for _, rf := range refused {
		sub := rf.q.req.subs[rf.q.i]
		if rf.q.req.announce {
			batch.Rejections = append(batch.Rejections, events.Rejection{RoomID: sub.RoomID, SenderID: sub.SenderID,
				ClientID: sub.ClientID, Code: rf.code, Message: rf.message})
		}
		dead = append(dead, DeadLetter{Submission: &sub, Code: rf.code, Message: rf.message, RejectedAt: now})
	}
	var stored []*roomRound
	for _, rr := range rooms {
		if rr.failed != nil || len(rr.subs) == 0 || (rr.d.changed && !rr.committed) {
			continue
		}
		visible := rr.head
		if rr.committed {
			s.committed(rr.id)
			visible = rr.d.next
			stored = append(stored, rr)
		}
		for _, rec := range rr.replayed {
			batch.Events = append(batch.Events, visible.visible(rec.Event))
		}
		if rr.committed {
			for _, rec := range rr.d.next.Tail.Events {
				batch.Events = append(batch.Events, visible.visible(rec.Event))
			}
		}
		batch.Acks = append(batch.Acks, rr.d.acks...)
		for _, rj := range rr.d.rejected {
			for _, q := range rr.subs {
				sub := q.req.subs[q.i]
				if q.req.announce && sub.SenderID == rj.SenderID && sub.ClientID == rj.ClientID {
					batch.Rejections = append(batch.Rejections, rj)
					break
				}
			}
		}
		dead = append(dead, rr.d.dead...)
	}
	if ids := roomsOf(batch); len(ids) == 1 {
		batch.RoomID = ids[0]
	}
	w.s.metrics.settled(outcomeRefused, len(refused))
	for _, rr := range rooms {
		w.s.metrics.roomSettled(rr)
	}

	// Callers that do not wait for the announcement are answered now: what
	// they asked is durable.
	settle := func(announceErr error, announcing bool) {
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
				switch {
				case rr.failed != nil:
					q.req.settle(q.i, Outcome{}, fmt.Errorf("append to room %s: %w", rr.id, rr.failed))
				default:
					q.req.settle(q.i, rr.d.outcomes[j], announceErr)
				}
			}
		}
	}
	settle(nil, false)

	var wg sync.WaitGroup
	var pubErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, published := w.stage(ctx, stagePublish)
		defer published()
		batch.TraceParent = telemetry.TraceParent(ctx)
		pubErr = s.announce(ctx, batch)
		w.s.metrics.deadLetters.Add(float64(len(dead)))
		for _, d := range dead {
			if err := s.pub.Publish(ctx, events.TopicDeadLetter, d); err != nil {
				s.log.WarnContext(ctx, "dead-letter a submission", "room_id", d.Submission.RoomID, "err", err)
			}
		}
	}()
	mctx, materialized := w.stage(ctx, stageMaterialize)
	w.materializeRound(mctx, stored)
	materialized()
	wg.Wait()
	if pubErr != nil {
		s.log.ErrorContext(ctx, "announce room events", "rooms", len(stored), "err", pubErr)
		pubErr = fmt.Errorf("announce: %w", pubErr)
	}
	settle(pubErr, true)
	return nil
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

// materializeRound writes the events and idempotency keys of every tail
// the round committed, and moves the senders' read markers, in one
// transaction; then it does what edits and deletes need, room by room. A
// marker write is guarded by the ETag the round read the member record
// with (nothing but a marker or a membership change writes it, and the
// round's own head writes prove no membership changed since); when one
// conflicts, the events go alone and each marker is moved on its own. A
// failure is logged: the tails are durable in their heads, and the next
// writer or reader of a room finishes it.
func (w *writer) materializeRound(ctx context.Context, stored []*roomRound) {
	if len(stored) == 0 {
		return
	}
	s := w.s
	var ops []statestore.Op
	for _, rr := range stored {
		t := rr.d.next.Tail
		for _, e := range t.Events {
			ops = append(ops, statestore.Op{Key: eventKey(rr.id, e.Seq), Value: encode(e)})
		}
		for _, e := range t.Idem {
			ops = append(ops, statestore.Op{Key: idemKey(rr.id, e.SenderID, e.ClientID), Value: encode(idemRecord{Seq: e.Seq})})
		}
	}
	markOps, moves := markerWrites(stored)
	wctx, cancel := context.WithTimeout(ctx, materializeTimeout)
	err := s.store.Transact(wctx, append(ops, markOps...))
	if err != nil && len(markOps) > 0 {
		// A marker moved meanwhile (or its record is not there yet):
		// the events alone, then the markers one by one.
		if err = s.store.Transact(wctx, ops); err == nil {
			w.moveMarkers(ctx, moves)
		}
	} else if err == nil && len(markOps) < len(moves) {
		w.moveMarkers(ctx, moves[len(markOps):])
	}
	cancel()
	if err != nil {
		s.log.WarnContext(ctx, "materialize a round", "rooms", len(stored), "err", err)
		return
	}
	at := s.now()
	for _, rr := range stored {
		for _, e := range rr.d.next.Tail.Events {
			s.events.Add(eventKey(rr.id, e.Seq), cachedEvent{rec: e, at: at})
		}
	}
	eachRoom(stored, func(rr *roomRound) {
		if err := s.materializeEdits(ctx, rr.d.next); err != nil {
			s.log.WarnContext(ctx, "materialize edits and deletes", "room_id", rr.id, "err", err)
			return
		}
		w.materialized.Add(rr.id, rr.d.next.LastSeq)
		if len(encode(rr.d.next.Tail)) > compactTailBytes {
			s.compactLater(rr.d.next)
		}
	})
}

// markMove is a read marker to move in a room.
type markMove struct {
	room string
	mk   mark
}

// markerWrites returns the guarded writes that move the round's read
// markers, for the member records the round read, and every move: the
// moves with a write first, then those whose record was not read as
// materialized (they are moved one by one).
func markerWrites(stored []*roomRound) (ops []statestore.Op, moves []markMove) {
	var alone []markMove
	for _, rr := range stored {
		for _, mk := range rr.d.next.Tail.Marks {
			it := rr.memberItem(mk.UserID)
			var m memberRecord
			if !it.Found() || decode(it, &m) != nil {
				alone = append(alone, markMove{rr.id, mk})
				continue
			}
			if !m.In || m.Seq > mk.Seq || m.ReadSeq >= mk.Seq {
				continue
			}
			m.ReadSeq, m.ReadMsgs = mk.Seq, mk.Msgs
			ops = append(ops, statestore.Op{Key: it.Key, Value: encode(m), ETag: it.ETag})
			moves = append(moves, markMove{rr.id, mk})
		}
	}
	return ops, append(moves, alone...)
}

// moveMarkers moves each marker on its own (a read-modify-write).
func (w *writer) moveMarkers(ctx context.Context, moves []markMove) {
	var mu sync.Mutex
	var failed error
	eachOf(moves, func(mv markMove) {
		if err := w.s.advanceMarker(ctx, mv.room, mv.mk); err != nil {
			mu.Lock()
			failed = err
			mu.Unlock()
		}
	})
	if failed != nil {
		w.s.log.WarnContext(ctx, "move read markers", "err", failed)
	}
}

// memberItem is the member record of userID as the round read it.
func (rr *roomRound) memberItem(userID string) statestore.Item {
	return rr.items[memberKey(rr.id, userID)]
}

// eachRoom runs f for every room, a few at a time.
func eachRoom(rooms []*roomRound, f func(*roomRound)) { eachOf(rooms, f) }

// eachOf runs f for every element, at most 16 at a time; one element runs
// inline.
func eachOf[T any](xs []T, f func(T)) {
	if len(xs) == 1 {
		f(xs[0])
		return
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, x := range xs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(x)
		}()
	}
	wg.Wait()
}

func newCommitToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
