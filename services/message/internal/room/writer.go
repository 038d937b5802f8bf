package room

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/events"
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
	// ride is a materialization's writes waiting for the next round's
	// head transaction (ride.go).
	ride     *ride
	rideWait time.Duration

	// materialized remembers, per room, the seq through which every event
	// is in its event key, as this replica wrote or checked it.
	materialized *lru.Cache[string, int64]
	// members is what the replica knows of its rooms' membership
	// (membercache.go); used by the round leader only.
	members *memberCache

	// markers are the read markers owed per room (markers.go); guarded
	// by mu.
	markers map[string]*markerAccount
	// marksLast is when markers were last written; marksTimer says a
	// flush is planned (markers.go). Guarded by mu.
	marksLast  time.Time
	marksTimer bool
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
	w := &writer{s: s, materialized: m, pending: map[string]bool{}, members: newMemberCache(), rideWait: rideWait,
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
