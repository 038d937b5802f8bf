package room

import (
	"context"
	"fmt"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// membership returns userID's membership of the room whose head is head,
// from the member item and any newer op in the head's tail.
func membership(head roomRecord, it statestore.Item, userID string) (memberRecord, bool, error) {
	var m memberRecord
	if it.Found() {
		if err := decode(it, &m); err != nil {
			return m, false, err
		}
	}
	for _, op := range head.Tail.Members {
		if op.UserID == userID && (!it.Found() || op.Seq > m.Seq) {
			m = memberRecord{Seq: op.Seq, In: op.In}
			if op.In {
				m.JoinedAt, m.ReadSeq, m.ReadMsgs = op.At, op.Seq, op.ReadMsgs
			}
		}
	}
	return m, m.In, nil
}

// changeMembers commits one membership change: build returns the event to
// append and the op, or nil for nothing to do. The change is committed by
// the head write alone, then materialized and announced.
func (s *Service) changeMembers(ctx context.Context, roomID string, build func(head roomRecord, items []statestore.Item) (*api.Event, *memberOp, error), users ...string) (roomRecord, error) {
	if validate.RoomID(roomID) != nil {
		return roomRecord{}, errRoomNotFound
	}
	var out, prev roomRecord
	var appended *api.Event
	err := s.retry(ctx, func() error {
		appended = nil
		head, it, found, err := s.readHead(ctx, roomID)
		if err != nil {
			return err
		}
		if !found {
			return errRoomNotFound
		}
		out = head
		keys := make([]string, len(users))
		for i, u := range users {
			keys[i] = memberKey(roomID, u)
		}
		items, err := s.bulkGet(ctx, keys...)
		if err != nil {
			return err
		}
		ev, op, err := build(head, items)
		if err != nil || ev == nil {
			return err
		}
		next := head
		next.LastSeq++
		ev.RoomID, ev.Seq, ev.ID, ev.CreatedAt = roomID, next.LastSeq, eventID(roomID, next.LastSeq), s.now().UTC()
		op.Seq, op.At, op.ReadMsgs = ev.Seq, ev.CreatedAt, next.Messages
		if op.In {
			next.MemberCount++
		} else {
			next.MemberCount = max(next.MemberCount-1, 0)
		}
		// The previous tail is materialized before it is replaced.
		if err := s.materialize(ctx, head); err != nil {
			return err
		}
		next.Tail = tail{Events: []eventRecord{{Event: *ev, Msgs: next.Messages}}, Members: []memberOp{*op}}
		if err := s.store.Write(ctx, guarded(it, next)); err != nil {
			return err
		}
		s.committed(roomID)
		out, prev, appended = next, head, ev
		return nil
	})
	if err != nil {
		return out, err
	}
	if appended != nil {
		// The previous change's membership events go again (membershipEvents).
		evs := append(membershipEvents(prev), *appended)
		s.announceLogged(ctx, events.RoomEventBatch{RoomID: roomID, Events: evs})
		if err := s.materialize(ctx, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// addMember appends member_joined for userID, sent by actorID; invited
// lets userID join a private room.
func (s *Service) addMember(ctx context.Context, actorID, roomID, userID string, invited bool) (api.Room, error) {
	out, err := s.changeMembers(ctx, roomID, func(head roomRecord, items []statestore.Item) (*api.Event, *memberOp, error) {
		_, actorIn, err := membership(head, items[0], actorID)
		if err != nil {
			return nil, nil, err
		}
		_, userIn, err := membership(head, items[1], userID)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case actorID != userID && !actorIn:
			// First: a non-member learns nothing of the room, not even
			// whether the user named is in it.
			return nil, nil, errNotMember
		case userIn:
			return nil, nil, nil // already a member
		case head.Kind == api.RoomDM:
			return nil, nil, apierror.New(apierror.Forbidden, "dm_closed", "nobody else can join a DM")
		case head.Kind == api.RoomPrivate && !(actorID == userID && invited):
			// Only the invitee enters a private room, by accepting.
			return nil, nil, apierror.New(apierror.Forbidden, "not_invited", "a private room is entered by accepting a member's invitation")
		}
		// A newcomer's read marker starts at its own join (op.Seq): the
		// history before it is not unread.
		return &api.Event{Type: api.EventMemberJoined, SenderID: actorID, UserID: userID},
			&memberOp{UserID: userID, In: true}, nil
	}, actorID, userID)
	if err != nil {
		return api.Room{}, fmt.Errorf("add %s to room %s: %w", userID, roomID, err)
	}
	return out.api(), nil
}

// Leave removes userID from a room and appends member_left. Leaving a room
// one is not in is a no-op; a DM cannot be left (its id is fixed to the pair).
func (s *Service) Leave(ctx context.Context, userID, roomID string) error {
	_, err := s.changeMembers(ctx, roomID, func(head roomRecord, items []statestore.Item) (*api.Event, *memberOp, error) {
		if head.Kind == api.RoomDM {
			return nil, nil, apierror.New(apierror.Forbidden, "dm_leave", "a DM cannot be left")
		}
		_, in, err := membership(head, items[0], userID)
		if err != nil || !in {
			return nil, nil, err
		}
		return &api.Event{Type: api.EventMemberLeft, SenderID: userID, UserID: userID}, &memberOp{UserID: userID}, nil
	}, userID)
	if err != nil {
		return fmt.Errorf("remove %s from room %s: %w", userID, roomID, err)
	}
	return nil
}
