package room

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/telemetry"
)

// stage runs f over what is pushed to it, in order, with everything that
// waits taken in one call: while f runs, pushes queue up, and the next
// call takes them all. A goroutine runs only while something waits (like
// the writer's leader), so a stage needs no stopping.
type stage[T any] struct {
	f func([]T)

	mu      sync.Mutex
	queue   []T
	running bool
}

func newStage[T any](f func([]T)) *stage[T] { return &stage[T]{f: f} }

func (s *stage[T]) push(x T) {
	s.mu.Lock()
	s.queue = append(s.queue, x)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

// idle reports whether nothing waits and nothing runs.
func (s *stage[T]) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.running && len(s.queue) == 0
}

func (s *stage[T]) drain() {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.f(batch)
	}
}

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
	// flushMarks, on a materializer job of its own, are rooms whose
	// markers are due (markers.go).
	flushMarks []string
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
		total += size(len(e.Text) + len(e.ClientID) + len(e.SenderID))
	}
	if total <= max {
		return []events.RoomEventBatch{b}
	}
	var out []events.RoomEventBatch
	cur, n := events.RoomEventBatch{}, 0
	for _, e := range b.Events {
		sz := size(len(e.Text) + len(e.ClientID) + len(e.SenderID))
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

// idle reports whether no round waits, runs, or is on its way to the
// broker or the store.
func (w *writer) idle() bool {
	w.mu.Lock()
	busy := w.running || len(w.queue) > 0
	w.mu.Unlock()
	return !busy && w.announcer.idle() && w.materializer.idle()
}

// Quiesce waits until every submission taken so far is committed,
// announced and materialized (or failed at it), or ctx ends: a replica
// that stops calls it after its last request, and tests call it to see
// the store as the pipeline leaves it.
func (s *Service) Quiesce(ctx context.Context) error {
	s.writer.flushMarkers()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !s.writer.idle() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the append pipeline: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// isPending reports whether token names a round of this replica whose
// materialization is on its way.
func (w *writer) isPending(token string) bool {
	if token == "" {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending[token]
}

func (w *writer) setPending(token string, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.pending[token] = true
	} else {
		delete(w.pending, token)
	}
}

// materializedThrough records that every event of the room up to seq is
// in its event key.
func (w *writer) materializedThrough(roomID string, seq int64) {
	if prev, ok := w.materialized.Get(roomID); !ok || seq > prev {
		w.materialized.Add(roomID, seq)
	}
}

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
	var flushRooms []string
	for _, c := range rounds {
		for _, rr := range c.stored {
			if _, ok := latest[rr.id]; !ok {
				order = append(order, rr.id)
			}
			latest[rr.id] = rr.d.next
		}
		flushRooms = append(flushRooms, c.flushMarks...)
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
	marks := w.dueMarks(s.now(), flushRooms)
	markOps, alone, err := w.markerWrites(ctx, marks)
	if err != nil {
		markOps, alone = nil, marks
	}
	wctx, wcancel := context.WithTimeout(ctx, materializeTimeout)
	err = s.store.Transact(wctx, append(ops, markOps...))
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
		n += 200 + len(e.Text) + len(e.ClientID) + len(e.SenderID) + len(e.ID)
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
