package room

import (
	"context"
	"errors"
	"fmt"
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

// Consume appends a batch from messages.submitted to the room logs, in
// the rounds of the replica's writer (writer.go), with submissions that
// arrived by any other way. A returned error is transient: the broker
// should redeliver, and idempotency absorbs what was already stored.
// Refused submissions are not errors: they are announced as rejections
// and dead-lettered.
func (s *Service) Consume(ctx context.Context, batch events.SubmissionBatch) error {
	_, err := s.writer.submit(ctx, batch.Submissions, true)
	return err
}

// Append appends submissions handed over directly (ws calls the message
// service's SubmitRoute) and returns what became of each, in order, once
// every one is stored or refused. Refusals are answered, not announced
// (the caller tells the sender) but dead-lettered; stored events are
// announced on room.events as always. An error is transient and the
// whole call may be repeated: what was stored is answered with its seq.
func (s *Service) Append(ctx context.Context, subs []events.Submission) ([]Outcome, error) {
	return s.writer.submit(ctx, subs, false)
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
// The compaction runs while no round of the replica does (writer.alone):
// a round that read the head before the compaction wrote it would lose
// its guarded write, and with it every head of its transaction would be
// written one by one. While rounds run, it is tried again later, up to
// compactTries times (the room's next commit replaces the tail anyway).
func (s *Service) compactLater(committed roomRecord) { s.compactIn(committed, compactTries) }

// compactTries bounds how often a compaction waits for a moment without
// rounds.
const compactTries = 100

func (s *Service) compactIn(committed roomRecord, tries int) {
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
		ran := s.writer.alone(func() {
			ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
			defer cancel()
			if err := s.compact(ctx, committed); err != nil {
				s.log.WarnContext(ctx, "compact a room head", "room_id", roomID, "err", err)
			}
		})
		if !ran && tries > 1 {
			s.compactIn(committed, tries-1)
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
// materialized, but for its read marks. It writes only while the head is still the one committed,
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
	// The tail's read marks stay: one not yet written to its member
	// record is durable only here, and unread counts read it from the
	// head meanwhile (a mark already written is moved again harmlessly).
	head.Tail = tail{Marks: head.Tail.Marks}
	if err := s.store.Write(ctx, guarded(it, head)); err != nil && !errors.Is(err, statestore.ErrConflict) {
		return err
	}
	return nil
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
// next is the head being built (its tail holds the batch's events so far)
// and prev the head it replaces, whose tail may not be materialized yet.
func checkTarget(next, prev roomRecord, items map[string]statestore.Item, sub events.Submission) error {
	head := next
	if sub.TargetSeq > head.LastSeq || sub.TargetSeq < 1 {
		return apierror.Invalidf("invalid_target", "room has no event %d", sub.TargetSeq)
	}
	rec, ok := next.tailEvent(sub.TargetSeq)
	if !ok {
		rec, ok = prev.tailEvent(sub.TargetSeq)
	}
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
	case head.deleted(sub.TargetSeq) || !hasContent(rec.Event):
		// A message without text is one whose delete has left the head.
		return apierror.Invalidf("message_deleted", "message %d is deleted", sub.TargetSeq)
	}
	return nil
}

// visible returns ev as history shows it: a deleted message, and every
// edit of it, without text.
func (r roomRecord) visible(ev api.Event) api.Event {
	if r.deleted(ev.Seq) || (ev.Type == api.EventEdit && r.deleted(ev.TargetSeq)) {
		ev.Text, ev.E2EE = "", nil
	}
	return ev
}

// hasContent reports whether ev still holds a text or an envelope (a
// deleted message's are erased).
func hasContent(ev api.Event) bool { return ev.Text != "" || ev.E2EE != nil }

// contentSize estimates the encoded size of ev's text or envelope.
func contentSize(ev api.Event) int {
	n := len(ev.Text)
	if e := ev.E2EE; e != nil {
		n += 120 + len(e.Device) + len(e.EPK) + len(e.IV) + len(e.CT)
		for _, k := range e.Keys {
			n += 30 + len(k.User) + len(k.Device) + len(k.WK)
		}
	}
	return n
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

// batchTimeout bounds one commit round (with its retries). The leader
// does not use its caller's context: it works for every waiter.
const batchTimeout = 30 * time.Second
