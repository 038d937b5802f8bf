package room

import (
	"slices"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// Outcome is what became of one submission: stored at Seq (by this append
// or an earlier one with the same client_id), or refused with Code.
type Outcome = events.Outcome

// appendDecision is what appending a room's submissions to its head
// decides. It is computed without I/O (decideAppend) from the head and the
// keys the submissions touch, so the rules are tested without a store.
type appendDecision struct {
	// next is the new head; changed says whether there is one to commit
	// (false when every submission was refused or is a repeat).
	next    roomRecord
	changed bool
	// outcomes are aligned with the submissions.
	outcomes []Outcome
	acks     []events.Ack
	rejected []events.Rejection
	dead     []DeadLetter
	// replays are the seqs of events stored by earlier changes that go out
	// again with this one (see decideAppend).
	replays []int64
}

// rejection turns an error into a refusal with a client-visible code.
func rejection(err error) (code, message string) {
	e, ok := apierror.As(err)
	if !ok {
		e = apierror.Invalidf("invalid", "%v", err)
	}
	return e.Code, e.Message
}

// decideAppend decides each submission to head's room in order:
//
//   - a sender who is not a member is refused;
//   - a client_id already stored (its idempotency key is in items) or
//     already given a seq in this batch is acknowledged with that seq and
//     appends nothing;
//   - an edit or delete whose target is not the sender's live message is
//     refused;
//   - anything else gets the next seq and goes into the new tail, with
//     the sender's read marker moved to it (docs/message.md).
//
// items holds the member records of the senders, their idempotency keys
// and the event keys of edit and delete targets, as read after head's tail
// was materialized (missing keys are Items that are not Found). The stored
// events of repeated submissions, and the room's previous change when it
// was a membership change, are listed in replays: their first
// announcement may be what was lost (a publish that failed, or a replica
// that stopped between its commit and its publish, is what makes a client
// or the broker send again), and receivers skip seqs they already have.
// Submissions must have passed checkSubmission.
//
// carry is what of head's tail the store may still lack (this replica's
// own tail, on its way to the store): the new tail starts with it, so it
// is not lost when the head is replaced.
func decideAppend(head roomRecord, carry tail, items map[string]statestore.Item, subs []events.Submission, now time.Time) (appendDecision, error) {
	d := appendDecision{outcomes: make([]Outcome, len(subs))}
	roomID := head.ID
	reject := func(i int, err error) {
		sub := subs[i]
		code, msg := rejection(err)
		d.outcomes[i] = Outcome{Code: code, Message: msg}
		d.rejected = append(d.rejected, events.Rejection{RoomID: roomID, SenderID: sub.SenderID, ClientID: sub.ClientID, Code: code, Message: msg})
		d.dead = append(d.dead, DeadLetter{Submission: &sub, Code: code, Message: msg, RejectedAt: now})
	}

	next := head
	next.Deletes = slices.Clone(head.Deletes)
	next.Tail = carry.clone()
	carried := len(next.Tail.Events)
	deleted := false               // a delete in this batch
	assigned := map[string]int64{} // idempotency keys given a seq in this batch
	marks := map[string]int{}      // sender → index in next.Tail.Marks
	for i, mk := range next.Tail.Marks {
		marks[mk.UserID] = i
	}
	for i, sub := range subs {
		if _, in, err := membership(head, items[memberKey(roomID, sub.SenderID)], sub.SenderID); err != nil {
			return d, err
		} else if !in {
			reject(i, errNotMember)
			continue
		}
		ik := idemKey(roomID, sub.SenderID, sub.ClientID)
		if sub.ClientID != "" {
			seq, ok := assigned[ik]
			if !ok {
				// The head's own tail may not be materialized yet.
				seq, ok = head.tailIdem(sub.SenderID, sub.ClientID)
				if ok {
					d.replays = append(d.replays, seq)
				}
			}
			if it := items[ik]; !ok && it.Found() {
				var r idemRecord
				if err := decode(it, &r); err != nil {
					return d, err
				}
				seq, ok = r.Seq, true
				d.replays = append(d.replays, seq)
			}
			if ok {
				d.outcomes[i] = Outcome{Seq: seq}
				d.acks = append(d.acks, events.Ack{RoomID: roomID, SenderID: sub.SenderID, ClientID: sub.ClientID, Seq: seq})
				continue
			}
		}
		if err := checkEncryption(head, sub); err != nil {
			reject(i, err)
			continue
		}
		if sub.Type != api.EventMessage {
			if err := checkTarget(next, head, items, sub); err != nil {
				if _, ok := apierror.As(err); ok {
					reject(i, err)
					continue
				}
				return d, err
			}
		}

		next.LastSeq++
		ev := api.Event{
			RoomID: roomID, Seq: next.LastSeq, Type: sub.Type, ID: eventID(roomID, next.LastSeq),
			SenderID: sub.SenderID, ClientID: sub.ClientID, Text: sub.Text, E2EE: sub.E2EE, TargetSeq: sub.TargetSeq, CreatedAt: now,
		}
		switch sub.Type {
		case api.EventMessage:
			ev.TargetSeq = 0
			next.Messages++
			// Sending marks the room read up to one's own message, so a
			// user's own messages are never unread (docs/message.md).
			mk := mark{UserID: sub.SenderID, Seq: ev.Seq, Msgs: next.Messages}
			if j, ok := marks[sub.SenderID]; ok {
				next.Tail.Marks[j] = mk
			} else {
				marks[sub.SenderID] = len(next.Tail.Marks)
				next.Tail.Marks = append(next.Tail.Marks, mk)
			}
		case api.EventDelete:
			ev.Text, ev.E2EE = "", nil
			next.Deletes = append(next.Deletes, deletion{Seq: sub.TargetSeq, At: now})
			deleted = true
		}
		next.Tail.Events = append(next.Tail.Events, eventRecord{Event: ev, Msgs: next.Messages})
		if sub.ClientID != "" {
			assigned[ik] = ev.Seq
			next.Tail.Idem = append(next.Tail.Idem, idemEntry{SenderID: sub.SenderID, ClientID: sub.ClientID, Seq: ev.Seq})
		}
		d.outcomes[i] = Outcome{Seq: ev.Seq}
	}
	if len(next.Tail.Events) == carried {
		slices.Sort(d.replays)
		d.replays = slices.Compact(d.replays)
		return d, nil
	}
	for _, e := range membershipEvents(head) {
		d.replays = append(d.replays, e.Seq)
	}
	slices.Sort(d.replays)
	d.replays = slices.Compact(d.replays)
	if deleted {
		// A message deleted in the batch that sent or edited it: its text
		// is never stored (see erase.go).
		for i, rec := range next.Tail.Events {
			next.Tail.Events[i].Event = next.visible(rec.Event)
		}
	}
	d.next, d.changed = next, true
	return d, nil
}

// checkEncryption holds a submission to its room's kind: an encrypted DM
// takes envelopes wrapped for its members only, any other room text only.
func checkEncryption(head roomRecord, sub events.Submission) error {
	switch {
	case sub.Type == api.EventDelete:
		return nil
	case head.Encrypted && sub.E2EE == nil:
		return apierror.Invalidf("encryption_required", "this DM is end-to-end encrypted: send e2ee, not text")
	case !head.Encrypted && sub.E2EE != nil:
		return apierror.Invalidf("not_encrypted", "this room is not end-to-end encrypted: send text")
	case head.Encrypted:
		return e2ee.CheckEnvelope(sub.E2EE, head.Members...)
	}
	return nil
}

// appendKeys lists the keys decideAppend needs for subs to roomID, besides
// the head: the senders' member records, their idempotency keys and the
// targets of edits and deletes.
func appendKeys(roomID string, subs []events.Submission, need func(key string)) {
	for _, sub := range subs {
		need(memberKey(roomID, sub.SenderID))
		if sub.ClientID != "" {
			need(idemKey(roomID, sub.SenderID, sub.ClientID))
		}
		if sub.Type != api.EventMessage && sub.TargetSeq > 0 {
			need(eventKey(roomID, sub.TargetSeq))
		}
	}
}
