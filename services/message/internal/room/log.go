package room

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// DeadLetter is the payload the message service publishes to
// events.TopicDeadLetter for a submission that can never be stored.
type DeadLetter struct {
	Submission *events.Submission `json:"submission,omitempty"`
	// Raw holds a pub/sub message that was not a SubmissionBatch at all.
	Raw        string    `json:"raw,omitempty"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	RejectedAt time.Time `json:"rejected_at"`
}

// Consume appends a batch from messages.submitted to the room logs. Each
// room's submissions go through that room's combiner, so submissions that
// are pending at once (from this and other deliveries) share one
// transaction. A returned error is transient: the broker should redeliver,
// and idempotency absorbs what was already stored. Refused submissions are
// not errors: they are announced as rejections and dead-lettered.
func (s *Service) Consume(ctx context.Context, batch events.SubmissionBatch) error {
	var order []string
	byRoom := map[string][]events.Submission{}
	for _, sub := range batch.Submissions {
		if _, ok := byRoom[sub.RoomID]; !ok {
			order = append(order, sub.RoomID)
		}
		byRoom[sub.RoomID] = append(byRoom[sub.RoomID], sub)
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, roomID := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.queue.submit(ctx, roomID, byRoom[roomID])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// DeadLetterRaw dead-letters a pub/sub message that could not be decoded.
func (s *Service) DeadLetterRaw(ctx context.Context, raw []byte, reason error) error {
	const maxRaw = 64 << 10
	if len(raw) > maxRaw {
		raw = raw[:maxRaw]
	}
	return s.pub.Publish(ctx, events.TopicDeadLetter, DeadLetter{
		Raw: string(raw), Code: "malformed", Message: reason.Error(), RejectedAt: s.now().UTC(),
	})
}

// appendPending appends one room's pending submissions in one transaction
// (retried on ETag conflicts), then announces the result.
func (s *Service) appendPending(ctx context.Context, roomID string, subs []events.Submission) error {
	var out events.RoomEventBatch
	var dead []DeadLetter
	var committed *roomRecord
	err := s.retry(ctx, func() error {
		var err error
		out, dead, committed, err = s.tryAppend(ctx, roomID, subs)
		return err
	})
	if err != nil {
		return fmt.Errorf("append %d submissions to room %s: %w", len(subs), roomID, err)
	}
	if err := s.announce(ctx, out); err != nil {
		return err
	}
	if committed != nil {
		// Durable already: a failure here is finished by the next writer
		// or reader of the room, so it is logged, not retried.
		if err := s.materialize(ctx, *committed); err != nil {
			s.log.WarnContext(ctx, "materialize after append", "room_id", roomID, "err", err)
		} else if len(encode(committed.Tail)) > compactTailBytes {
			s.compactLater(*committed)
		}
	}
	for _, d := range dead {
		if err := s.pub.Publish(ctx, events.TopicDeadLetter, d); err != nil {
			return fmt.Errorf("dead-letter a submission to room %s: %w", roomID, err)
		}
	}
	return nil
}

// compactTailBytes is the size of an encoded tail above which the replica
// that committed it empties it from the head once it is materialized and
// the room has been quiet for compactAfter. Every history page and
// membership check reads the head: after a burst into a room its tail
// could hold a whole batch (tens of KiB to decode on every read) until the
// room's next commit. Smaller tails are left in place, and a busy room's
// tail is replaced by its next commit anyway: compacting either would cost
// appends a write for nothing.
const (
	compactTailBytes = 4 << 10
	compactAfter     = 100 * time.Millisecond
)

// compactLater compacts committed's tail once the room has had no commit
// through this replica for compactAfter (see committed, which cancels).
func (s *Service) compactLater(committed roomRecord) {
	roomID := committed.ID
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if t, ok := s.compactions[roomID]; ok {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(compactAfter, func() {
		s.compactMu.Lock()
		if s.compactions[roomID] != t {
			s.compactMu.Unlock()
			return // a newer commit took over
		}
		delete(s.compactions, roomID)
		s.compactMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		defer cancel()
		if err := s.compact(ctx, committed); err != nil {
			s.log.WarnContext(ctx, "compact a room head", "room_id", roomID, "err", err)
		}
	})
	s.compactions[roomID] = t
}

// cancelCompaction drops a pending compaction of the room: a newer commit
// replaced the tail it was for.
func (s *Service) cancelCompaction(roomID string) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if t, ok := s.compactions[roomID]; ok {
		t.Stop()
		delete(s.compactions, roomID)
	}
}

// compact empties committed's tail from the room's head, once that tail is
// materialized. It writes only while the head is still the one committed,
// guarded by its ETag: a newer commit has replaced the tail itself, and a
// conflict means one landed meanwhile, which is not an error.
func (s *Service) compact(ctx context.Context, committed roomRecord) error {
	head, it, found, err := s.readHead(ctx, committed.ID)
	if err != nil || !found {
		return err
	}
	// LastSeq only grows with a commit, so equal seqs mean the same tail.
	if head.LastSeq != committed.LastSeq || len(head.Tail.Events) == 0 {
		return nil
	}
	head.Tail = tail{}
	if err := s.store.Write(ctx, guarded(it, head)); err != nil && !errors.Is(err, statestore.ErrConflict) {
		return err
	}
	return nil
}

// tryAppend is one attempt: read the head, materialize its tail, read
// everything the submissions touch, decide each submission, and commit the
// accepted ones as the head's new tail with one write guarded by the
// head's ETag. ErrConflict means another writer got there first; the
// caller re-reads and retries. committed is the new head, nil when
// nothing was appended.
func (s *Service) tryAppend(ctx context.Context, roomID string, subs []events.Submission) (out events.RoomEventBatch, dead []DeadLetter, committed *roomRecord, err error) {
	out = events.RoomEventBatch{RoomID: roomID}
	now := s.now().UTC()
	reject := func(sub events.Submission, err error) {
		e, ok := apierror.As(err)
		if !ok {
			e = apierror.Invalidf("invalid", "%v", err)
		}
		out.Rejections = append(out.Rejections, events.Rejection{
			RoomID: sub.RoomID, SenderID: sub.SenderID, ClientID: sub.ClientID, Code: e.Code, Message: e.Message,
		})
		dead = append(dead, DeadLetter{Submission: &sub, Code: e.Code, Message: e.Message, RejectedAt: now})
	}

	valid := make([]events.Submission, 0, len(subs))
	for _, sub := range subs {
		if err := checkSubmission(sub); err != nil {
			reject(sub, err)
			continue
		}
		valid = append(valid, sub)
	}
	if len(valid) == 0 {
		return out, dead, nil, nil
	}

	head, headIt, found, err := s.readHead(ctx, roomID)
	if err != nil {
		return out, dead, nil, err
	}
	if !found {
		for _, sub := range valid {
			reject(sub, errRoomNotFound)
		}
		return out, dead, nil, nil
	}
	// After this, every key reflects every committed change up to head.
	if err := s.materialize(ctx, head); err != nil {
		return out, dead, nil, err
	}

	var keys []string
	seenKey := map[string]bool{}
	need := func(k string) {
		if !seenKey[k] {
			seenKey[k] = true
			keys = append(keys, k)
		}
	}
	for _, sub := range valid {
		need(memberKey(roomID, sub.SenderID))
		if sub.ClientID != "" {
			need(idemKey(roomID, sub.SenderID, sub.ClientID))
		}
		if sub.Type != api.EventMessage && sub.TargetSeq <= head.LastSeq {
			need(eventKey(roomID, sub.TargetSeq))
		}
	}
	list, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return out, dead, nil, err
	}
	items := make(map[string]statestore.Item, len(list))
	for _, it := range list {
		items[it.Key] = it
	}

	// replays are the seqs of submissions an earlier batch stored: their
	// events are announced again with the acks, because that batch's
	// announcement may be what was lost (a publish that failed, or a
	// replica that stopped between its commit and its publish, is what
	// makes the broker redeliver). Receivers skip seqs they have.
	var replays []int64
	next := head
	next.Deletes = slices.Clone(head.Deletes)
	next.Tail = tail{}
	deleted := false               // a delete in this batch
	assigned := map[string]int64{} // idempotency keys given a seq in this batch
	marks := map[string]int{}      // sender → index in next.Tail.Marks
	for _, sub := range valid {
		if _, in, err := membership(head, items[memberKey(roomID, sub.SenderID)], sub.SenderID); err != nil {
			return out, dead, nil, err
		} else if !in {
			reject(sub, errNotMember)
			continue
		}
		ik := idemKey(roomID, sub.SenderID, sub.ClientID)
		if sub.ClientID != "" {
			seq, ok := assigned[ik]
			if it := items[ik]; !ok && it.Found() {
				var r idemRecord
				if err := decode(it, &r); err != nil {
					return out, dead, nil, err
				}
				seq, ok = r.Seq, true
				replays = append(replays, seq)
			}
			if ok {
				out.Acks = append(out.Acks, events.Ack{RoomID: roomID, SenderID: sub.SenderID, ClientID: sub.ClientID, Seq: seq})
				continue
			}
		}
		if sub.Type != api.EventMessage {
			if err := checkTarget(next, items, sub); err != nil {
				if _, ok := apierror.As(err); ok {
					reject(sub, err)
					continue
				}
				return out, dead, nil, err
			}
		}

		next.LastSeq++
		ev := api.Event{
			RoomID: roomID, Seq: next.LastSeq, Type: sub.Type, ID: eventID(roomID, next.LastSeq),
			SenderID: sub.SenderID, ClientID: sub.ClientID, Text: sub.Text, TargetSeq: sub.TargetSeq, CreatedAt: now,
		}
		switch sub.Type {
		case api.EventMessage:
			ev.TargetSeq = 0
			next.Messages++
			// Sending marks the room read up to one's own message, so a
			// user's own messages are never unread (docs/message.md).
			mk := mark{UserID: sub.SenderID, Seq: ev.Seq, Msgs: next.Messages}
			if i, ok := marks[sub.SenderID]; ok {
				next.Tail.Marks[i] = mk
			} else {
				marks[sub.SenderID] = len(next.Tail.Marks)
				next.Tail.Marks = append(next.Tail.Marks, mk)
			}
		case api.EventDelete:
			ev.Text = ""
			next.Deletes = append(next.Deletes, deletion{Seq: sub.TargetSeq, At: now})
			deleted = true
		}
		next.Tail.Events = append(next.Tail.Events, eventRecord{Event: ev, Msgs: next.Messages})
		if sub.ClientID != "" {
			assigned[ik] = ev.Seq
			next.Tail.Idem = append(next.Tail.Idem, idemEntry{SenderID: sub.SenderID, ClientID: sub.ClientID, Seq: ev.Seq})
		}
	}
	if len(next.Tail.Events) > 0 {
		for _, e := range membershipEvents(head) {
			replays = append(replays, e.Seq)
		}
	}
	slices.Sort(replays)
	replayed, err := s.eventRecords(ctx, head, slices.Compact(replays))
	if err != nil {
		return out, dead, nil, err
	}
	if len(next.Tail.Events) == 0 {
		for _, rec := range replayed {
			out.Events = append(out.Events, head.visible(rec.Event))
		}
		return out, dead, nil, nil
	}
	if deleted {
		// A message deleted in the batch that sent or edited it: its text
		// is never stored (see erase.go).
		for i, rec := range next.Tail.Events {
			next.Tail.Events[i].Event = next.visible(rec.Event)
		}
	}
	next.Deletes = s.trimDeletes(ctx, roomID, next.Deletes, now)
	if err := s.store.Write(ctx, guarded(headIt, next)); err != nil {
		return out, dead, nil, err
	}
	s.committed(roomID)
	for _, rec := range append(replayed, next.Tail.Events...) {
		out.Events = append(out.Events, next.visible(rec.Event))
	}
	return out, dead, &next, nil
}

// membershipEvents returns the events of head's tail when the last change
// was a membership change (a founding, join or leave): the next change of
// the room announces them again. Without that, a member_joined whose
// announcement was lost (a publish that failed, a replica that stopped
// before publishing) would never reach a ws replica where none of the
// room's members is connected yet, and the joiner's sockets there would
// not follow the room. (Where the room is followed, the next event's gap
// brings the join in anyway.) Receivers skip seqs they have, so the
// second announcement costs one small event.
func membershipEvents(head roomRecord) []api.Event {
	if len(head.Tail.Members) == 0 {
		return nil
	}
	evs := make([]api.Event, len(head.Tail.Events))
	for i, rec := range head.Tail.Events {
		evs[i] = rec.Event
	}
	return evs
}

// eventRecords returns the events at seqs (ascending, unique, at or below
// head's last_seq), in order. Events in the head's tail may not be in their
// keys yet; every older one is, and once read it is cached (event keys
// never change but for an erase, and pages hide erased text anyway). What
// is not in the tail or the cache is read in one BulkGet, and leftover
// text of a deleted message found there is erased (repair).
func (s *Service) eventRecords(ctx context.Context, head roomRecord, seqs []int64) ([]eventRecord, error) {
	recs := make([]eventRecord, len(seqs))
	var keys []string
	var missing []int
	for i, seq := range seqs {
		if rec, ok := head.tailEvent(seq); ok {
			recs[i] = rec
		} else if rec, ok := s.cachedEvent(eventKey(head.ID, seq)); ok {
			recs[i] = rec
		} else {
			keys = append(keys, eventKey(head.ID, seq))
			missing = append(missing, i)
		}
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return nil, err
	}
	for j, it := range items {
		if !it.Found() {
			return nil, fmt.Errorf("%s missing below last_seq %d", it.Key, head.LastSeq)
		}
		rec := &recs[missing[j]]
		if err := decode(it, rec); err != nil {
			return nil, err
		}
		s.events.Add(it.Key, cachedEvent{rec: *rec, at: s.now()})
		s.repair(head, *rec)
	}
	return recs, nil
}

// checkTarget checks that the message an edit or delete refers to exists,
// is a message that is not deleted, and was sent by the submitter.
func checkTarget(head roomRecord, items map[string]statestore.Item, sub events.Submission) error {
	if sub.TargetSeq > head.LastSeq || sub.TargetSeq < 1 {
		return apierror.Invalidf("invalid_target", "room has no event %d", sub.TargetSeq)
	}
	rec, ok := head.tailEvent(sub.TargetSeq)
	if !ok {
		it := items[eventKey(sub.RoomID, sub.TargetSeq)]
		if !it.Found() {
			return fmt.Errorf("event %d of room %s is missing below last_seq %d", sub.TargetSeq, sub.RoomID, head.LastSeq)
		}
		if err := decode(it, &rec); err != nil {
			return err
		}
	}
	switch {
	case rec.Type != api.EventMessage:
		return apierror.Invalidf("invalid_target", "event %d is not a message", sub.TargetSeq)
	case rec.SenderID != sub.SenderID:
		return apierror.New(apierror.Forbidden, "not_sender", "only the sender may %s a message", sub.Type)
	case head.deleted(sub.TargetSeq) || rec.Text == "":
		// A message without text is one whose delete has left the head.
		return apierror.Invalidf("message_deleted", "message %d is deleted", sub.TargetSeq)
	}
	return nil
}

// visible returns ev as history shows it: a deleted message, and every
// edit of it, without text.
func (r roomRecord) visible(ev api.Event) api.Event {
	if r.deleted(ev.Seq) || (ev.Type == api.EventEdit && r.deleted(ev.TargetSeq)) {
		ev.Text = ""
	}
	return ev
}

// Page selects a slice of a room's log: the events after After, or the
// ones just below Before, or the latest ones; at most Limit, ascending.
type Page struct {
	After, Before       int64
	HasAfter, HasBefore bool
	Limit               int
}

// History returns a page of a room's log. A non-empty asUser must be a
// member. The page is one BulkGet of the event keys in its seq range.
func (s *Service) History(ctx context.Context, asUser, roomID string, p Page) (api.EventsResponse, error) {
	if p.Limit < 1 || p.Limit > api.MaxPageLimit {
		return api.EventsResponse{}, apierror.Invalidf("invalid_limit", "limit must be 1-%d", api.MaxPageLimit)
	}
	if p.After < 0 || p.Before < 0 {
		return api.EventsResponse{}, apierror.Invalidf("invalid_seq", "after and before must not be negative")
	}
	var head roomRecord
	var err error
	if p.HasBefore && !p.HasAfter && asUser != "" {
		head, err = s.scrollbackHead(ctx, asUser, roomID, p.Before)
	} else {
		head, err = s.access(ctx, asUser, roomID)
	}
	if err != nil {
		return api.EventsResponse{}, err
	}
	last := head.LastSeq
	var from, to int64
	switch {
	case p.HasAfter:
		from, to = p.After+1, min(last, p.After+int64(p.Limit))
		if p.HasBefore {
			to = min(to, p.Before-1)
		}
	case p.HasBefore:
		to = min(last, p.Before-1)
		from = max(1, to-int64(p.Limit)+1)
	default:
		to = last
		from = max(1, last-int64(p.Limit)+1)
	}
	resp := api.EventsResponse{Events: []api.Event{}, LastSeq: last}
	if from > to {
		return resp, nil
	}
	seqs := make([]int64, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		seqs = append(seqs, seq)
	}
	recs, err := s.eventRecords(ctx, head, seqs)
	if err != nil {
		return api.EventsResponse{}, fmt.Errorf("history of room %s: %w", roomID, err)
	}
	for _, rec := range recs {
		resp.Events = append(resp.Events, head.visible(rec.Event))
	}
	return resp, nil
}

// combiner runs appends one room at a time per process and coalesces the
// submissions that pile up for a room meanwhile into one transaction: the
// first caller for an idle room becomes its leader and drains the room's
// queue; later callers wait for their batch's outcome.
type combiner struct {
	run func(ctx context.Context, roomID string, subs []events.Submission) error
	max int

	mu     sync.Mutex
	queues map[string][]*pending
	busy   map[string]bool
}

type pending struct {
	subs []events.Submission
	done chan error // buffered: the leader never blocks on a caller that left
}

func newCombiner(run func(ctx context.Context, roomID string, subs []events.Submission) error) *combiner {
	return &combiner{run: run, max: 64, queues: map[string][]*pending{}, busy: map[string]bool{}}
}

// batchTimeout bounds one append transaction (with its retries). The
// leader does not use its caller's context: it works for every waiter.
const batchTimeout = 30 * time.Second

func (c *combiner) submit(ctx context.Context, roomID string, subs []events.Submission) error {
	p := &pending{subs: subs, done: make(chan error, 1)}
	c.mu.Lock()
	c.queues[roomID] = append(c.queues[roomID], p)
	lead := !c.busy[roomID]
	c.busy[roomID] = true
	c.mu.Unlock()
	if lead {
		c.drain(roomID)
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain appends the room's queued submissions, up to max per transaction,
// until the queue is empty.
func (c *combiner) drain(roomID string) {
	for {
		c.mu.Lock()
		queue := c.queues[roomID]
		if len(queue) == 0 {
			delete(c.queues, roomID)
			delete(c.busy, roomID)
			c.mu.Unlock()
			return
		}
		n, count := 0, 0
		for n < len(queue) && (n == 0 || count+len(queue[n].subs) <= c.max) {
			count += len(queue[n].subs)
			n++
		}
		batch := queue[:n]
		c.queues[roomID] = queue[n:]
		c.mu.Unlock()

		subs := make([]events.Submission, 0, count)
		for _, p := range batch {
			subs = append(subs, p.subs...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		err := c.run(ctx, roomID, subs)
		cancel()
		for _, p := range batch {
			p.done <- err
		}
	}
}
