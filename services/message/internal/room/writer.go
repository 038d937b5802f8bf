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
)

// The append path commits in rounds (group commit), in a pipeline of
// three stages. Submissions wait in one queue per replica; the first
// caller that finds no round running leads: it takes everything queued —
// submissions of any number of rooms, up to maxRound — and commits it:
//
//  1. one BulkGet of every room's head, the senders' member records, the
//     idempotency keys and the targets of edits and deletes;
//  2. the decisions (decideAppend), without I/O;
//  3. one write of every changed head, each guarded by its ETag (a
//     transaction when there are several; see commitHeads).
//
// Then it hands the round to the two other stages and leads the next
// round with what queued meanwhile, until the queue is empty:
//
//   - the announcer publishes committed rounds on room.events in commit
//     order, everything that waits in one publish (pipeline.go);
//   - the materializer writes the events and idempotency keys of every
//     committed round that waits, and moves the senders' read markers, in
//     one transaction.
//
// A room's order is kept: its submissions are taken in queue order, and a
// submission that lost an ETag race goes back to the front of the queue.
// What makes seqs gap-free and unique is unchanged: a head is committed
// only by a write conditioned on the head it was decided from. A head is
// replaced only when its tail is materialized, or by a head whose tail
// still holds every event the store lacks: a round that finds one of this
// replica's own heads whose materialization is still on its way carries
// that head's unmaterialized tail into the new one (carry), so history
// reads them from the head until the materializer confirms them. Any other
// head not known materialized is materialized before it is replaced, as
// before.
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
	// pending are the commit tokens of this replica's rounds whose
	// materialization is on its way.
	pending map[string]bool

	// materialized remembers, per room, the seq through which every event
	// is in its event key, as this replica wrote or checked it.
	materialized *lru.Cache[string, int64]

	// markers are the read markers owed per room (markers.go); guarded
	// by mu.
	markers map[string]*markerAccount
	// roundEvery is the least time between the starts of two rounds
	// (SetRoundInterval); zero starts each round as soon as the last one
	// has committed.
	roundEvery time.Duration
	lastRound  time.Time // when the last round started; guarded by mu

	announcer    *stage[*committedRound]
	materializer *stage[*committedRound]
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
	w := &writer{s: s, materialized: m, pending: map[string]bool{},
		markers: map[string]*markerAccount{}}
	w.announcer = newStage(w.announce)
	w.materializer = newStage(w.materializeRounds)
	return w
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
		// Rounds start at most every roundEvery (when set): submissions
		// that arrive meanwhile wait and go together, trading latency for
		// fewer sidecar calls per message. A round after a quiet spell
		// starts at once.
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		wait := w.roundEvery - time.Since(w.lastRound)
		w.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		w.mu.Lock()
		w.lastRound = time.Now()
		batch := w.take()
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
	for _, rr := range rooms {
		need(roomKey(rr.id))
		appendKeys(rr.id, rr.submissions(), need)
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
		return nil, token
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
