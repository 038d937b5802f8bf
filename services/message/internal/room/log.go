package room

import (
	"context"
	"errors"
	"fmt"
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
	err := s.retry(ctx, func() error {
		var err error
		out, dead, err = s.tryAppend(ctx, roomID, subs)
		return err
	})
	if err != nil {
		return fmt.Errorf("append %d submissions to room %s: %w", len(subs), roomID, err)
	}
	if err := s.announce(ctx, out); err != nil {
		return err
	}
	for _, d := range dead {
		if err := s.pub.Publish(ctx, events.TopicDeadLetter, d); err != nil {
			return fmt.Errorf("dead-letter a submission to room %s: %w", roomID, err)
		}
	}
	return nil
}

// appendState is what one append attempt read and changes.
type appendState struct {
	roomID string
	items  map[string]statestore.Item
	// dirty records to write back, guarded by the ETags they were read with.
	members map[string]*memberRecord
	events  map[int64]*eventRecord
	// created holds the new events of this attempt, by seq.
	created map[int64]*eventRecord
	order   []int64
}

// tryAppend is one attempt: read the head, then everything the
// submissions touch, decide each submission, and write all new events, the
// idempotency keys, the senders' read markers, the changed targets and the
// new head in one transaction guarded by the head's ETag. ErrConflict means
// another writer got there first; the caller re-reads and retries.
func (s *Service) tryAppend(ctx context.Context, roomID string, subs []events.Submission) (events.RoomEventBatch, []DeadLetter, error) {
	out := events.RoomEventBatch{RoomID: roomID}
	var dead []DeadLetter
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
		return out, dead, nil
	}

	// The head is read before the rest: a membership change that committed
	// before this read is seen below, and one that commits after it moves
	// the head and makes the transaction conflict.
	headIt, err := s.store.Get(ctx, roomKey(roomID))
	if errors.Is(err, statestore.ErrNotFound) {
		for _, sub := range valid {
			reject(sub, errRoomNotFound)
		}
		return out, dead, nil
	}
	if err != nil {
		return out, dead, err
	}
	var head roomRecord
	if err := decode(headIt, &head); err != nil {
		return out, dead, err
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
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return out, dead, err
	}
	st := &appendState{
		roomID: roomID, items: make(map[string]statestore.Item, len(items)),
		members: map[string]*memberRecord{}, events: map[int64]*eventRecord{},
		created: map[int64]*eventRecord{},
	}
	for _, it := range items {
		st.items[it.Key] = it
	}

	next := head
	var ops []statestore.Op
	assigned := map[string]int64{} // idempotency keys given a seq in this batch
	for _, sub := range valid {
		mk := memberKey(roomID, sub.SenderID)
		if !st.items[mk].Found() {
			reject(sub, errNotMember)
			continue
		}
		ik := idemKey(roomID, sub.SenderID, sub.ClientID)
		if sub.ClientID != "" {
			seq, ok := assigned[ik]
			if !ok && st.items[ik].Found() {
				var r idemRecord
				if err := decode(st.items[ik], &r); err != nil {
					return out, dead, err
				}
				seq, ok = r.Seq, true
			}
			if ok {
				out.Acks = append(out.Acks, events.Ack{RoomID: roomID, SenderID: sub.SenderID, ClientID: sub.ClientID, Seq: seq})
				continue
			}
		}
		var target *eventRecord
		if sub.Type != api.EventMessage {
			target, err = st.target(sub, head.LastSeq)
			if err != nil {
				if _, ok := apierror.As(err); ok {
					reject(sub, err)
					continue
				}
				return out, dead, err
			}
		}
		member, err := st.member(sub.SenderID)
		if err != nil {
			return out, dead, err
		}

		next.LastSeq++
		ev := api.Event{
			RoomID: roomID, Seq: next.LastSeq, Type: sub.Type, ID: eventID(roomID, next.LastSeq),
			SenderID: sub.SenderID, ClientID: sub.ClientID, Text: sub.Text, TargetSeq: sub.TargetSeq, CreatedAt: now,
		}
		if sub.Type == api.EventMessage {
			ev.TargetSeq = 0
		}
		switch sub.Type {
		case api.EventMessage:
			next.Messages++
			// Sending marks the room read up to one's own message, so a
			// user's own messages are never unread (docs/message.md).
			member.ReadSeq, member.ReadMsgs = ev.Seq, next.Messages
		case api.EventEdit:
			target.Edits = append(target.Edits, ev.Seq)
		case api.EventDelete:
			ev.Text = ""
			if err := s.erase(ctx, st, target); err != nil {
				return out, dead, err
			}
		}
		st.created[ev.Seq] = &eventRecord{Event: ev, Msgs: next.Messages}
		st.order = append(st.order, ev.Seq)
		if sub.ClientID != "" {
			assigned[ik] = ev.Seq
			ops = append(ops, statestore.Op{Key: ik, Value: encode(idemRecord{Seq: ev.Seq}), IfAbsent: true})
		}
	}
	if len(st.order) == 0 {
		return out, dead, nil
	}
	for _, seq := range st.order {
		rec := st.created[seq]
		out.Events = append(out.Events, rec.Event)
		ops = append(ops, statestore.Op{Key: eventKey(roomID, seq), Value: encode(rec), IfAbsent: true})
	}
	// Every sender's membership is written back with its ETag, so a sender
	// who left meanwhile makes the transaction conflict instead of posting.
	for uid, m := range st.members {
		ops = append(ops, guarded(st.items[memberKey(roomID, uid)], m))
	}
	for seq, rec := range st.events {
		ops = append(ops, guarded(st.items[eventKey(roomID, seq)], rec))
	}
	ops = append(ops, guarded(headIt, next))
	if err := s.store.Transact(ctx, ops); err != nil {
		return out, dead, err
	}
	return out, dead, nil
}

// member returns the sender's membership record for changing.
func (st *appendState) member(uid string) (*memberRecord, error) {
	if m, ok := st.members[uid]; ok {
		return m, nil
	}
	var m memberRecord
	if err := decode(st.items[memberKey(st.roomID, uid)], &m); err != nil {
		return nil, err
	}
	st.members[uid] = &m
	return &m, nil
}

// target returns the message an edit or delete refers to, for changing,
// after checking that it exists, is a live message, and was sent by the
// submitter.
func (st *appendState) target(sub events.Submission, lastSeq int64) (*eventRecord, error) {
	if sub.TargetSeq > lastSeq {
		return nil, apierror.Invalidf("invalid_target", "room has no event %d", sub.TargetSeq)
	}
	rec, ok := st.events[sub.TargetSeq]
	if !ok {
		it := st.items[eventKey(st.roomID, sub.TargetSeq)]
		if !it.Found() {
			return nil, fmt.Errorf("event %d of room %s is missing below last_seq %d", sub.TargetSeq, st.roomID, lastSeq)
		}
		rec = &eventRecord{}
		if err := decode(it, rec); err != nil {
			return nil, err
		}
		st.events[sub.TargetSeq] = rec
	}
	switch {
	case rec.Type != api.EventMessage:
		return nil, apierror.Invalidf("invalid_target", "event %d is not a message", sub.TargetSeq)
	case rec.SenderID != sub.SenderID:
		return nil, apierror.New(apierror.Forbidden, "not_sender", "only the sender may %s a message", sub.Type)
	case rec.Deleted:
		return nil, apierror.Invalidf("message_deleted", "message %d is deleted", sub.TargetSeq)
	}
	return rec, nil
}

// erase removes a deleted message's text from history: its own and that of
// every edit of it.
func (s *Service) erase(ctx context.Context, st *appendState, target *eventRecord) error {
	target.Deleted, target.Text = true, ""
	var missing []string
	for _, seq := range target.Edits {
		k := eventKey(st.roomID, seq)
		if rec, ok := st.created[seq]; ok {
			rec.Text = ""
			continue
		}
		if _, ok := st.items[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		items, err := s.bulkGet(ctx, missing...)
		if err != nil {
			return err
		}
		for _, it := range items {
			st.items[it.Key] = it
		}
	}
	for _, seq := range target.Edits {
		if _, ok := st.created[seq]; ok {
			continue
		}
		rec, ok := st.events[seq]
		if !ok {
			it := st.items[eventKey(st.roomID, seq)]
			if !it.Found() {
				continue
			}
			rec = &eventRecord{}
			if err := decode(it, rec); err != nil {
				return err
			}
			st.events[seq] = rec
		}
		rec.Text = ""
	}
	return nil
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
	head, err := s.access(ctx, asUser, roomID)
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
	keys := make([]string, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		keys = append(keys, eventKey(roomID, seq))
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return api.EventsResponse{}, fmt.Errorf("history of room %s: %w", roomID, err)
	}
	for _, it := range items {
		if !it.Found() {
			return api.EventsResponse{}, fmt.Errorf("history of room %s: %s missing below last_seq %d", roomID, it.Key, last)
		}
		var rec eventRecord
		if err := decode(it, &rec); err != nil {
			return api.EventsResponse{}, err
		}
		resp.Events = append(resp.Events, rec.Event)
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
