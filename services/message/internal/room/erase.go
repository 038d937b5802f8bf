package room

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/statestore"
)

// Deleting a message erases its text, and the text of every edit of it,
// from storage, not only from what history serves (docs/message.md,
// "Deletes"):
//
//   - a delete committed in the same batch as its target or an edit of it
//     blanks them in the new head's tail, so the text is never written;
//   - materializing a tail that holds a delete rewrites the target's event
//     key and its edits' keys without text (erase). The edits of a message
//     are found through editsKey, which materializing an edit fills;
//   - event keys are written by blind, idempotent writes (materialize), so
//     a replica that read a tail holding the message before the delete was
//     committed, and stalled, could write the text back after the erase.
//     Such a write can only land within materializeTimeout of the stalled
//     replica's read, so the replica that erased erases again
//     eraseAgainAfter later; and a history read that meets a record of a
//     deleted message that still has text erases it too (repair), which
//     covers a replica that stopped before its second erase.
//
// Whatever storage holds meanwhile, history never serves the text: pages
// hide it using the head's recent deletes. A delete stays there for
// keepDeletes, then the next commit of the room erases its text once more
// (after any stalled write, so for good) and drops it from the head
// (trimDeletes): the head does not grow with every delete ever made. By
// then no replica serves a record it cached before the delete (cached
// records are served for eventCacheTTL), and a message without text is
// known to be deleted (checkTarget).

// editsKey holds the seqs of the edits of the message at seq.
func editsKey(roomID string, seq int64) string {
	return "edits|" + roomID + "|" + strconv.FormatInt(seq, 10)
}

// seqList is a set of seqs, in the order they were added.
type seqList struct {
	Seqs []int64 `json:"seqs"`
}

const (
	// materializeTimeout bounds materialize's write of event keys: a write
	// with text cannot reach the store after it.
	materializeTimeout = 10 * time.Second
	// eraseAgainAfter is when a replica that erased a deleted message's
	// text erases it again: after any materialize that began before the
	// delete was committed has either written or given up.
	eraseAgainAfter = materializeTimeout + 5*time.Second
	// keepDeletes is how long a delete stays in the room head.
	keepDeletes = 10 * time.Minute
	// eventCacheTTL is how long a replica serves an event record it cached;
	// it must be shorter than keepDeletes less materializeTimeout.
	eventCacheTTL = 5 * time.Minute
	// maxTrims bounds the deletes one commit drops from the head (each
	// costs an erase: two reads, and a write if text was left).
	maxTrims = 16
)

// trimDeletes returns deletes without those older than keepDeletes at now,
// at most maxTrims of them, each erased once more first. A delete whose
// erase fails stays for a later commit.
func (s *Service) trimDeletes(ctx context.Context, roomID string, deletes []deletion, now time.Time) []deletion {
	n := 0
	for n < len(deletes) && n < maxTrims && now.Sub(deletes[n].At) > keepDeletes {
		if err := s.erase(ctx, roomID, deletes[n].Seq); err != nil {
			s.log.WarnContext(ctx, "erase a delete leaving the head", "room_id", roomID, "seq", deletes[n].Seq, "err", err)
			break
		}
		n++
	}
	return deletes[n:]
}

// cachedEvent is an event record in a replica's cache and when it was
// cached.
type cachedEvent struct {
	rec eventRecord
	at  time.Time
}

// cachedEvent returns the record cached at key, if it was cached less
// than eventCacheTTL ago.
func (s *Service) cachedEvent(key string) (eventRecord, bool) {
	c, ok := s.events.Get(key)
	if !ok || s.now().Sub(c.at) > eventCacheTTL {
		return eventRecord{}, false
	}
	return c.rec, true
}

// indexEdit records the edit at seq in the list of edits of its target.
func (s *Service) indexEdit(ctx context.Context, roomID string, e eventRecord) error {
	return update(ctx, s, editsKey(roomID, e.TargetSeq), func(l *seqList, _ bool) bool {
		if slices.Contains(l.Seqs, e.Seq) {
			return false
		}
		l.Seqs = append(l.Seqs, e.Seq)
		return true
	})
}

// erase rewrites the event key of the deleted message at target, those of
// its edits, and those at also, without text. It is idempotent and writes
// nothing when no text is left.
func (s *Service) erase(ctx context.Context, roomID string, target int64, also ...int64) error {
	edits, err := s.getItem(ctx, editsKey(roomID, target))
	if err != nil {
		return err
	}
	keys := []string{eventKey(roomID, target)}
	for _, seq := range also {
		keys = append(keys, eventKey(roomID, seq))
	}
	if edits.Found() {
		var l seqList
		if err := decode(edits, &l); err != nil {
			return err
		}
		for _, seq := range l.Seqs {
			keys = append(keys, eventKey(roomID, seq))
		}
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return err
	}
	var ops []statestore.Op
	for _, it := range items {
		if !it.Found() {
			continue // not materialized yet: its tail was blanked at the commit
		}
		var rec eventRecord
		if err := decode(it, &rec); err != nil {
			return err
		}
		if !hasContent(rec.Event) {
			continue
		}
		rec.Text, rec.E2EE = "", nil
		ops = append(ops, statestore.Op{Key: it.Key, Value: encode(rec)})
	}
	if len(ops) == 0 {
		return nil
	}
	if err := s.store.Transact(ctx, ops); err != nil {
		return err
	}
	for _, op := range ops {
		s.events.Remove(op.Key)
	}
	return nil
}

// eraseLater erases the deleted message at target (and its edits, and the
// events at also) after wait, unless that erase is already planned in this
// replica.
func (s *Service) eraseLater(roomID string, target int64, wait time.Duration, also ...int64) {
	key := fmt.Sprint(roomID, target, also)
	s.eraseMu.Lock()
	defer s.eraseMu.Unlock()
	if s.erasures[key] {
		return
	}
	s.erasures[key] = true
	time.AfterFunc(wait, func() {
		s.eraseMu.Lock()
		delete(s.erasures, key)
		s.eraseMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		defer cancel()
		if err := s.erase(ctx, roomID, target, also...); err != nil {
			s.log.WarnContext(ctx, "erase a deleted message", "room_id", roomID, "seq", target, "err", err)
		}
	})
}

// repair plans an erase when a record read from the store still holds
// text that head says is deleted.
func (s *Service) repair(head roomRecord, rec eventRecord) {
	if !hasContent(rec.Event) || hasContent(head.visible(rec.Event)) {
		return
	}
	if rec.Type == api.EventEdit {
		// The record itself too: an edit stored before the edits index
		// existed is not in it.
		s.eraseLater(head.ID, rec.TargetSeq, 0, rec.Seq)
		return
	}
	s.eraseLater(head.ID, rec.Seq, 0)
}
