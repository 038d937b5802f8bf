package room

import (
	"context"
	"errors"
	"fmt"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/statestore"
)

// bulkGet reads keys in one call.
func (s *Service) bulkGet(ctx context.Context, keys ...string) ([]statestore.Item, error) {
	items, err := s.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	if len(items) != len(keys) {
		return nil, fmt.Errorf("bulk get of %d keys returned %d items", len(keys), len(items))
	}
	return items, nil
}

// getItem reads one key; a missing key is an Item that is not Found.
func (s *Service) getItem(ctx context.Context, key string) (statestore.Item, error) {
	it, err := s.store.Get(ctx, key)
	if errors.Is(err, statestore.ErrNotFound) {
		return statestore.Item{Key: key}, nil
	}
	return it, err
}

// readHead reads a room's head; found is false for an unknown room.
func (s *Service) readHead(ctx context.Context, roomID string) (head roomRecord, it statestore.Item, found bool, err error) {
	it, err = s.getItem(ctx, roomKey(roomID))
	if err != nil || !it.Found() {
		return head, it, false, err
	}
	return head, it, true, decode(it, &head)
}

// update is a read-modify-write of one key with a single conditional
// write, retried on conflict. change gets the current value (zero when the
// key is missing) and reports whether to write it back.
func update[T any](ctx context.Context, s *Service, key string, change func(v *T, found bool) bool) error {
	return s.retry(ctx, func() error {
		it, err := s.getItem(ctx, key)
		if err != nil {
			return err
		}
		var v T
		if it.Found() {
			if err := decode(it, &v); err != nil {
				return err
			}
		}
		if !change(&v, it.Found()) {
			return nil
		}
		return s.store.Write(ctx, guarded(it, v))
	})
}

// materialize writes a committed head's tail to the keys it belongs in.
// Every write is idempotent and cannot undo a newer one (event and
// idempotency keys are written once with the only value they can have;
// membership writes compare seqs; the one exception, text written back
// after a delete erased it, is erased again: see erase.go), so any
// number of replicas may materialize the same tail, in any order, any
// number of times. An append materializes the tail it found before
// committing its own, so every event below the head's tail is in its
// event key.
func (s *Service) materialize(ctx context.Context, head roomRecord) error {
	t := head.Tail
	if n := len(t.Events); n > 0 || len(t.Idem) > 0 {
		done := false
		if n > 0 {
			it, err := s.getItem(ctx, eventKey(head.ID, t.Events[n-1].Seq))
			if err != nil {
				return err
			}
			done = it.Found()
		}
		if !done {
			ops := make([]statestore.Op, 0, n+len(t.Idem))
			for _, e := range t.Events {
				ops = append(ops, statestore.Op{Key: eventKey(head.ID, e.Seq), Value: encode(e)})
			}
			for _, e := range t.Idem {
				ops = append(ops, statestore.Op{Key: idemKey(head.ID, e.SenderID, e.ClientID), Value: encode(idemRecord{Seq: e.Seq})})
			}
			// Bounded, so that a stalled write of a message's text cannot
			// land long after its delete (see erase.go).
			wctx, cancel := context.WithTimeout(ctx, materializeTimeout)
			err := s.store.Transact(wctx, ops)
			cancel()
			if err != nil {
				return fmt.Errorf("materialize events of room %s: %w", head.ID, err)
			}
		}
	}
	// Edits are indexed under their target and deletes erase the target's
	// text, outside the check above: a tail whose events were written by a
	// materializer that failed after them is finished here.
	if err := s.materializeEdits(ctx, head); err != nil {
		return err
	}
	for _, op := range t.Members {
		err := update(ctx, s, memberKey(head.ID, op.UserID), func(m *memberRecord, found bool) bool {
			if found && op.Seq <= m.Seq {
				return false
			}
			*m = memberRecord{Seq: op.Seq, In: op.In}
			if op.In {
				m.JoinedAt, m.ReadSeq, m.ReadMsgs = op.At, op.Seq, op.ReadMsgs
			}
			return true
		})
		if err == nil {
			err = update(ctx, s, membersKey(head.ID), func(set *memberSet, _ bool) bool {
				return set.apply(op.UserID, op.Seq, op.In)
			})
		}
		if err == nil {
			err = update(ctx, s, userRoomsKey(op.UserID), func(set *memberSet, _ bool) bool {
				return set.apply(head.ID, op.Seq, op.In)
			})
		}
		if err != nil {
			return fmt.Errorf("materialize membership of %s in room %s: %w", op.UserID, head.ID, err)
		}
	}
	for _, mk := range t.Marks {
		if err := s.advanceMarker(ctx, head.ID, mk); err != nil {
			return err
		}
	}
	if t.Public {
		if err := s.indexPublic(ctx, head.ID); err != nil {
			return fmt.Errorf("add room %s to the public index: %w", head.ID, err)
		}
	}
	return nil
}

// materializeEdits indexes the edits of head's tail under their targets
// and erases the text of the messages its deletes delete.
func (s *Service) materializeEdits(ctx context.Context, head roomRecord) error {
	for _, e := range head.Tail.Events {
		switch e.Type {
		case api.EventEdit:
			if err := s.indexEdit(ctx, head.ID, e); err != nil {
				return fmt.Errorf("materialize edit %d of room %s: %w", e.Seq, head.ID, err)
			}
		case api.EventDelete:
			if err := s.erase(ctx, head.ID, e.TargetSeq); err != nil {
				return fmt.Errorf("materialize delete %d of room %s: %w", e.Seq, head.ID, err)
			}
			s.eraseLater(head.ID, e.TargetSeq, s.eraseAgain)
		}
	}
	return nil
}

// advanceMarker moves a member's read marker forward to mk; it never moves
// it back and never touches a member who left or joined after mk.
func (s *Service) advanceMarker(ctx context.Context, roomID string, mk mark) error {
	err := update(ctx, s, memberKey(roomID, mk.UserID), func(m *memberRecord, found bool) bool {
		if !found || !m.In || m.Seq > mk.Seq || m.ReadSeq >= mk.Seq {
			return false
		}
		m.ReadSeq, m.ReadMsgs = mk.Seq, mk.Msgs
		return true
	})
	if err != nil {
		return fmt.Errorf("move the read marker of %s in room %s: %w", mk.UserID, roomID, err)
	}
	return nil
}
