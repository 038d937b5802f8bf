package room

import (
	"context"
	"errors"
	"fmt"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// Create makes a public or private room with userID as its first member.
// Creating a room appends no event: its log starts empty (last_seq 0).
func (s *Service) Create(ctx context.Context, userID, name, kind string) (api.Room, error) {
	name, err := checkName(name)
	if err != nil {
		return api.Room{}, err
	}
	if kind != api.RoomPublic && kind != api.RoomPrivate {
		return api.Room{}, apierror.Invalidf("invalid_kind", "kind must be %q or %q", api.RoomPublic, api.RoomPrivate)
	}
	rec := roomRecord{ID: newRoomID(), Name: name, Kind: kind, CreatedBy: userID, CreatedAt: s.now().UTC()}
	err = s.retry(ctx, func() error {
		keys := []string{userRoomsKey(userID)}
		if kind == api.RoomPublic {
			keys = append(keys, publicRoomsKey)
		}
		items, err := s.bulkGet(ctx, keys...)
		if err != nil {
			return err
		}
		mine, err := decodeList(items[0])
		if err != nil {
			return err
		}
		ops := []statestore.Op{
			{Key: roomKey(rec.ID), Value: encode(rec), IfAbsent: true},
			{Key: memberKey(rec.ID, userID), Value: encode(memberRecord{JoinedAt: rec.CreatedAt}), IfAbsent: true},
			{Key: membersKey(rec.ID), Value: encode(idList{IDs: []string{userID}}), IfAbsent: true},
			guarded(items[0], mine.with(rec.ID)),
		}
		if kind == api.RoomPublic {
			public, err := decodeList(items[1])
			if err != nil {
				return err
			}
			ops = append(ops, guarded(items[1], public.with(rec.ID)))
		}
		return s.store.Transact(ctx, ops)
	})
	if err != nil {
		return api.Room{}, fmt.Errorf("create room: %w", err)
	}
	return rec.api(), nil
}

// OpenDM returns the DM room of userID and otherID, creating it on first
// use. Its id is derived from the pair, so both users get the same room.
func (s *Service) OpenDM(ctx context.Context, userID, otherID string) (api.Room, error) {
	if err := checkUserID(otherID); err != nil {
		return api.Room{}, err
	}
	if otherID == userID {
		return api.Room{}, apierror.Invalidf("dm_self", "a DM needs another user")
	}
	id := dmID(userID, otherID)
	pair := []string{userID, otherID}
	if otherID < userID {
		pair = []string{otherID, userID}
	}
	var out roomRecord
	err := s.retry(ctx, func() error {
		items, err := s.bulkGet(ctx, roomKey(id), userRoomsKey(pair[0]), userRoomsKey(pair[1]))
		if err != nil {
			return err
		}
		if items[0].Found() {
			return decode(items[0], &out)
		}
		now := s.now().UTC()
		out = roomRecord{ID: id, Kind: api.RoomDM, CreatedBy: userID, CreatedAt: now, Members: pair}
		ops := []statestore.Op{
			{Key: roomKey(id), Value: encode(out), IfAbsent: true},
			{Key: membersKey(id), Value: encode(idList{IDs: pair}), IfAbsent: true},
		}
		for i, uid := range pair {
			mine, err := decodeList(items[1+i])
			if err != nil {
				return err
			}
			ops = append(ops,
				statestore.Op{Key: memberKey(id, uid), Value: encode(memberRecord{JoinedAt: now}), IfAbsent: true},
				guarded(items[1+i], mine.with(id)))
		}
		return s.store.Transact(ctx, ops)
	})
	if err != nil {
		return api.Room{}, fmt.Errorf("open dm: %w", err)
	}
	return out.api(), nil
}

// Join adds userID to a public room. Joining a room one is in already is a
// no-op; a private room or a DM can only be entered by being added.
func (s *Service) Join(ctx context.Context, userID, roomID string) (api.Room, error) {
	return s.addMember(ctx, userID, roomID, userID)
}

// AddMember lets a member of a public or private room add another user.
func (s *Service) AddMember(ctx context.Context, actorID, roomID, userID string) (api.Room, error) {
	if err := checkUserID(userID); err != nil {
		return api.Room{}, err
	}
	return s.addMember(ctx, actorID, roomID, userID)
}

// addMember appends member_joined for userID, sent by actorID, in the same
// transaction that writes the membership, the member list and the user's
// room set.
func (s *Service) addMember(ctx context.Context, actorID, roomID, userID string) (api.Room, error) {
	if !validRoomID.MatchString(roomID) {
		return api.Room{}, errRoomNotFound
	}
	var out roomRecord
	var joined *api.Event
	err := s.retry(ctx, func() error {
		joined = nil
		items, err := s.bulkGet(ctx, roomKey(roomID), memberKey(roomID, actorID), memberKey(roomID, userID),
			membersKey(roomID), userRoomsKey(userID))
		if err != nil {
			return err
		}
		roomIt, actorIt, userIt, membersIt, mineIt := items[0], items[1], items[2], items[3], items[4]
		if !roomIt.Found() {
			return errRoomNotFound
		}
		if err := decode(roomIt, &out); err != nil {
			return err
		}
		if userIt.Found() {
			return nil // already a member
		}
		switch {
		case out.Kind == api.RoomDM:
			return apierror.New(apierror.Forbidden, "dm_closed", "nobody else can join a DM")
		case actorID == userID && out.Kind == api.RoomPrivate:
			return apierror.New(apierror.Forbidden, "not_invited", "a private room is entered by being added by a member")
		case actorID != userID && !actorIt.Found():
			return errNotMember
		}
		members, err := decodeList(membersIt)
		if err != nil {
			return err
		}
		mine, err := decodeList(mineIt)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		head := out
		head.LastSeq++
		ev := api.Event{
			RoomID: roomID, Seq: head.LastSeq, Type: api.EventMemberJoined, ID: eventID(roomID, head.LastSeq),
			SenderID: actorID, UserID: userID, CreatedAt: now,
		}
		// A newcomer's read marker starts at its own join: the history
		// before it is not unread.
		member := memberRecord{JoinedAt: now, ReadSeq: head.LastSeq, ReadMsgs: head.Messages}
		err = s.store.Transact(ctx, []statestore.Op{
			{Key: eventKey(roomID, ev.Seq), Value: encode(eventRecord{Event: ev, Msgs: head.Messages}), IfAbsent: true},
			guarded(roomIt, head),
			{Key: memberKey(roomID, userID), Value: encode(member), IfAbsent: true},
			guarded(membersIt, members.with(userID)),
			guarded(mineIt, mine.with(roomID)),
		})
		if err != nil {
			return err
		}
		out, joined = head, &ev
		return nil
	})
	if err != nil {
		return api.Room{}, fmt.Errorf("add %s to room %s: %w", userID, roomID, err)
	}
	if joined != nil {
		s.announceLogged(ctx, events.RoomEventBatch{RoomID: roomID, Events: []api.Event{*joined}})
	}
	return out.api(), nil
}

// Leave removes userID from a room and appends member_left. Leaving a room
// one is not in is a no-op; a DM cannot be left (its id is fixed to the pair).
func (s *Service) Leave(ctx context.Context, userID, roomID string) error {
	if !validRoomID.MatchString(roomID) {
		return errRoomNotFound
	}
	var left *api.Event
	err := s.retry(ctx, func() error {
		left = nil
		items, err := s.bulkGet(ctx, roomKey(roomID), memberKey(roomID, userID), membersKey(roomID), userRoomsKey(userID))
		if err != nil {
			return err
		}
		roomIt, userIt, membersIt, mineIt := items[0], items[1], items[2], items[3]
		if !roomIt.Found() {
			return errRoomNotFound
		}
		var head roomRecord
		if err := decode(roomIt, &head); err != nil {
			return err
		}
		if head.Kind == api.RoomDM {
			return apierror.New(apierror.Forbidden, "dm_leave", "a DM cannot be left")
		}
		if !userIt.Found() {
			return nil
		}
		members, err := decodeList(membersIt)
		if err != nil {
			return err
		}
		mine, err := decodeList(mineIt)
		if err != nil {
			return err
		}
		head.LastSeq++
		ev := api.Event{
			RoomID: roomID, Seq: head.LastSeq, Type: api.EventMemberLeft, ID: eventID(roomID, head.LastSeq),
			SenderID: userID, UserID: userID, CreatedAt: s.now().UTC(),
		}
		err = s.store.Transact(ctx, []statestore.Op{
			{Key: eventKey(roomID, ev.Seq), Value: encode(eventRecord{Event: ev, Msgs: head.Messages}), IfAbsent: true},
			guarded(roomIt, head),
			{Key: userIt.Key, Delete: true, ETag: userIt.ETag},
			guarded(membersIt, members.without(userID)),
			guarded(mineIt, mine.without(roomID)),
		})
		if err != nil {
			return err
		}
		left = &ev
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove %s from room %s: %w", userID, roomID, err)
	}
	if left != nil {
		s.announceLogged(ctx, events.RoomEventBatch{RoomID: roomID, Events: []api.Event{*left}})
	}
	return nil
}

// Mine lists userID's rooms with last_seq, read_seq and unread.
func (s *Service) Mine(ctx context.Context, userID string) ([]api.Room, error) {
	it, err := s.store.Get(ctx, userRoomsKey(userID))
	if errors.Is(err, statestore.ErrNotFound) {
		return []api.Room{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", userID, err)
	}
	ids, err := decodeList(it)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, 2*len(ids.IDs))
	for _, id := range ids.IDs {
		keys = append(keys, roomKey(id), memberKey(id, userID))
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", userID, err)
	}
	out := make([]api.Room, 0, len(ids.IDs))
	for i := 0; i < len(items); i += 2 {
		if !items[i].Found() || !items[i+1].Found() {
			continue // written together with the list; absent only if it was never there
		}
		var r roomRecord
		var m memberRecord
		if err := decode(items[i], &r); err != nil {
			return nil, err
		}
		if err := decode(items[i+1], &m); err != nil {
			return nil, err
		}
		room := r.api()
		room.ReadSeq = m.ReadSeq
		room.Unread = max(r.Messages-m.ReadMsgs, 0)
		out = append(out, room)
	}
	return out, nil
}

// Cursors lists userID's rooms with their last seq, for ws's hello frame.
func (s *Service) Cursors(ctx context.Context, userID string) ([]api.RoomCursor, error) {
	rooms, err := s.Mine(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]api.RoomCursor, len(rooms))
	for i, r := range rooms {
		out[i] = api.RoomCursor{RoomID: r.ID, LastSeq: r.LastSeq}
	}
	return out, nil
}

// Public lists the public rooms.
func (s *Service) Public(ctx context.Context) ([]api.Room, error) {
	it, err := s.store.Get(ctx, publicRoomsKey)
	if errors.Is(err, statestore.ErrNotFound) {
		return []api.Room{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("public rooms: %w", err)
	}
	ids, err := decodeList(it)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(ids.IDs))
	for i, id := range ids.IDs {
		keys[i] = roomKey(id)
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("public rooms: %w", err)
	}
	out := make([]api.Room, 0, len(items))
	for _, it := range items {
		if !it.Found() {
			continue
		}
		var r roomRecord
		if err := decode(it, &r); err != nil {
			return nil, err
		}
		out = append(out, r.api())
	}
	return out, nil
}

// Members lists a room's member ids. A non-empty asUser must be a member.
func (s *Service) Members(ctx context.Context, asUser, roomID string) ([]string, error) {
	if _, err := s.access(ctx, asUser, roomID); err != nil {
		return nil, err
	}
	it, err := s.store.Get(ctx, membersKey(roomID))
	if errors.Is(err, statestore.ErrNotFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	l, err := decodeList(it)
	if err != nil {
		return nil, err
	}
	if l.IDs == nil {
		l.IDs = []string{}
	}
	return l.IDs, nil
}

// access reads a room and, when asUser is not empty, checks that asUser is
// a member: 404 for an unknown room, 403 for a non-member.
func (s *Service) access(ctx context.Context, asUser, roomID string) (roomRecord, error) {
	var head roomRecord
	if !validRoomID.MatchString(roomID) {
		return head, errRoomNotFound
	}
	keys := []string{roomKey(roomID)}
	if asUser != "" {
		keys = append(keys, memberKey(roomID, asUser))
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return head, fmt.Errorf("read room %s: %w", roomID, err)
	}
	if !items[0].Found() {
		return head, errRoomNotFound
	}
	if asUser != "" && !items[1].Found() {
		return head, errNotMember
	}
	return head, decode(items[0], &head)
}

// MarkRead moves userID's read marker in a room to seq (capped at the
// room's last seq). It never moves backwards.
func (s *Service) MarkRead(ctx context.Context, userID, roomID string, seq int64) error {
	if seq < 0 {
		return apierror.Invalidf("invalid_seq", "seq must not be negative")
	}
	if !validRoomID.MatchString(roomID) {
		return errRoomNotFound
	}
	err := s.retry(ctx, func() error {
		items, err := s.bulkGet(ctx, roomKey(roomID), memberKey(roomID, userID))
		if err != nil {
			return err
		}
		if !items[0].Found() {
			return errRoomNotFound
		}
		if !items[1].Found() {
			return errNotMember
		}
		var head roomRecord
		var m memberRecord
		if err := decode(items[0], &head); err != nil {
			return err
		}
		if err := decode(items[1], &m); err != nil {
			return err
		}
		seq := min(seq, head.LastSeq)
		if seq <= m.ReadSeq {
			return nil
		}
		msgs := head.Messages
		if seq < head.LastSeq {
			ev, err := s.store.Get(ctx, eventKey(roomID, seq))
			if err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			var rec eventRecord
			if err := decode(ev, &rec); err != nil {
				return err
			}
			msgs = rec.Msgs
		}
		m.ReadSeq, m.ReadMsgs = seq, msgs
		return s.store.Write(ctx, guarded(items[1], m))
	})
	if err != nil {
		return fmt.Errorf("mark %s read in %s: %w", userID, roomID, err)
	}
	return nil
}

// Submit checks a send from the REST API and publishes it to
// messages.submitted, the same path a WebSocket send takes.
func (s *Service) Submit(ctx context.Context, sub events.Submission) error {
	if err := checkSubmission(sub); err != nil {
		return err
	}
	if _, err := s.access(ctx, sub.SenderID, sub.RoomID); err != nil {
		return err
	}
	if err := s.pub.Publish(ctx, events.TopicSubmitted, events.SubmissionBatch{Submissions: []events.Submission{sub}}); err != nil {
		return fmt.Errorf("publish submission to %s: %w", sub.RoomID, err)
	}
	return nil
}

func eventID(roomID string, seq int64) string { return fmt.Sprintf("%s-%d", roomID, seq) }
