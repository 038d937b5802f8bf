package room

import (
	"context"
	"errors"
	"fmt"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// Create makes a public or private room with userID as its first member.
// The log starts with the creator's member_joined (seq 1), committed in the
// head's first tail and announced like any appended event, so every ws
// replica routes the new room to the creator's open sockets at once.
func (s *Service) Create(ctx context.Context, userID, name, kind string) (api.Room, error) {
	return s.CreateOnce(ctx, userID, name, kind, "")
}

// CreateOnce is Create made safe to retry: a non-empty clientID derives
// the room's id from the creator and clientID, so a retry of a creation
// whose answer was lost finds the room the first attempt made (and
// finishes it) instead of making a second one. Reusing a clientID for
// another name or kind is a conflict.
func (s *Service) CreateOnce(ctx context.Context, userID, name, kind, clientID string) (api.Room, error) {
	name, err := validate.RoomName(name)
	if err != nil {
		return api.Room{}, err
	}
	if kind != api.RoomPublic && kind != api.RoomPrivate {
		return api.Room{}, apierror.Invalidf("invalid_kind", "kind must be %q or %q", api.RoomPublic, api.RoomPrivate)
	}
	if err := validate.ClientID(clientID, false); err != nil {
		return api.Room{}, err
	}
	id := newRoomID()
	if clientID != "" {
		id = clientRoomID(userID, clientID)
	}
	rec := roomRecord{ID: id, Name: name, Kind: kind, CreatedBy: userID, CreatedAt: s.now().UTC()}
	rec.Tail.Public = kind == api.RoomPublic
	if err := s.checkRoomCap(ctx, userID); err != nil {
		// A retry of a creation that brought the user to the cap answers
		// the room it made, as any retry does.
		if clientID != "" && apierror.CodeOf(err) == "too_many_rooms" {
			if _, _, found, rerr := s.readHead(ctx, id); rerr == nil && found {
				return s.createdBefore(ctx, rec)
			}
		}
		return api.Room{}, err
	}
	first := rec.founded(userID)
	err = s.store.Write(ctx, statestore.Op{Key: roomKey(rec.ID), Value: encode(rec), IfAbsent: true})
	if errors.Is(err, statestore.ErrConflict) && clientID != "" {
		return s.createdBefore(ctx, rec)
	}
	if err != nil {
		return api.Room{}, fmt.Errorf("create room: %w", err)
	}
	// Materialized before it is announced, so a client that hears of the
	// room and lists its rooms (or reconnects) already finds it. The head
	// is committed either way: a failed materialization is finished by the
	// next writer or reader, and the founding events are announced anyway.
	err = s.materialize(ctx, rec)
	s.announceLogged(ctx, events.RoomEventBatch{RoomID: rec.ID, Events: first})
	if err != nil {
		return api.Room{}, fmt.Errorf("create room: %w", err)
	}
	return rec.api(), nil
}

// createdBefore answers a retried CreateOnce whose room exists: the room,
// once its founding tail is materialized (the first attempt may have
// failed there) and announced again if it is still the room's last change
// (the first announcement may be what was lost).
func (s *Service) createdBefore(ctx context.Context, want roomRecord) (api.Room, error) {
	head, _, found, err := s.readHead(ctx, want.ID)
	if err != nil {
		return api.Room{}, fmt.Errorf("create room: %w", err)
	}
	if !found || head.CreatedBy != want.CreatedBy || head.Name != want.Name || head.Kind != want.Kind {
		return api.Room{}, apierror.New(apierror.Conflict, "client_id_reused", "client_id was used to create another room")
	}
	if err := s.materialize(ctx, head); err != nil {
		return api.Room{}, fmt.Errorf("create room: %w", err)
	}
	if evs := membershipEvents(head); len(evs) > 0 && head.LastSeq == int64(len(evs)) {
		s.announceLogged(ctx, events.RoomEventBatch{RoomID: head.ID, Events: evs})
	}
	return head.api(), nil
}

// founded puts the founding members' member_joined events (seq 1, 2, …,
// sent by the creator) and their joins into a new room's first tail, and
// returns the events. Like any join, a founder's read marker starts at its
// own member_joined, with no message before it.
func (r *roomRecord) founded(userIDs ...string) []api.Event {
	out := make([]api.Event, 0, len(userIDs))
	r.MembersCounted, r.MemberCount = true, int64(len(userIDs))
	for _, uid := range userIDs {
		r.LastSeq++
		ev := api.Event{RoomID: r.ID, Seq: r.LastSeq, Type: api.EventMemberJoined, ID: eventID(r.ID, r.LastSeq),
			SenderID: r.CreatedBy, UserID: uid, CreatedAt: r.CreatedAt}
		r.Tail.Events = append(r.Tail.Events, eventRecord{Event: ev, Msgs: r.Messages})
		r.Tail.Members = append(r.Tail.Members, memberOp{UserID: uid, Seq: ev.Seq, In: true, At: r.CreatedAt, ReadMsgs: r.Messages})
		out = append(out, ev)
	}
	return out
}

// OpenDM returns the DM room of userID and otherID, creating it on first
// use. Its id is derived from the pair, so both users get the same room.
func (s *Service) OpenDM(ctx context.Context, userID, otherID string) (api.Room, error) {
	if err := validate.UserID(otherID); err != nil {
		return api.Room{}, err
	}
	if otherID == userID {
		return api.Room{}, apierror.Invalidf("dm_self", "a DM needs another user")
	}
	return s.openDMOnce(ctx, userID, otherID, dmID(userID, otherID), false)
}

// OpenEncryptedDM is OpenDM for the pair's end-to-end encrypted DM: a
// room of its own (edmID), encrypted from its creation on.
func (s *Service) OpenEncryptedDM(ctx context.Context, userID, otherID string) (api.Room, error) {
	if err := validate.UserID(otherID); err != nil {
		return api.Room{}, err
	}
	if otherID == userID {
		return api.Room{}, apierror.Invalidf("dm_self", "a DM needs another user")
	}
	return s.openDMOnce(ctx, userID, otherID, edmID(userID, otherID), true)
}

func (s *Service) openDMOnce(ctx context.Context, userID, otherID, id string, encrypted bool) (api.Room, error) {
	// Opens of one DM that overlap in this replica share one attempt: both
	// users open their DM at once when they first meet, and every attempt
	// races the others on the head's insert-if-absent (on MariaDB a crowd
	// of such inserts can lock each other out for long).
	v, err, _ := s.dms.Do(id, func() (any, error) { return s.openDM(ctx, userID, otherID, id, encrypted) })
	if err != nil {
		return api.Room{}, err
	}
	return v.(api.Room), nil
}

func (s *Service) openDM(ctx context.Context, userID, otherID, id string, encrypted bool) (api.Room, error) {
	pair := []string{userID, otherID}
	if otherID < userID {
		pair = []string{otherID, userID}
	}
	var out roomRecord
	var first []api.Event
	err := s.retry(ctx, func() error {
		first = nil
		head, _, found, err := s.readHead(ctx, id)
		if err != nil {
			return err
		}
		if found {
			out = head
			return nil
		}
		out = roomRecord{ID: id, Kind: api.RoomDM, CreatedBy: userID, CreatedAt: s.now().UTC(), Members: pair, Encrypted: encrypted}
		joined := out.founded(pair...)
		if err := s.store.Write(ctx, statestore.Op{Key: roomKey(id), Value: encode(out), IfAbsent: true}); err != nil {
			return err
		}
		first = joined
		return nil
	})
	if err == nil {
		err = s.materialize(ctx, out)
	}
	if first != nil {
		// Only the opener whose insert created the head announces, so the
		// founding events go out once however many open the DM at once;
		// both sides' open sockets learn of the DM now, not at reconnect.
		// Announced after materializing, as in Create.
		s.announceLogged(ctx, events.RoomEventBatch{RoomID: id, Events: first})
	}
	if err != nil {
		return api.Room{}, fmt.Errorf("open dm: %w", err)
	}
	return out.api(), nil
}

// Mine lists userID's rooms with last_seq, read_seq and unread.
func (s *Service) Mine(ctx context.Context, userID string) ([]api.Room, error) {
	it, err := s.getItem(ctx, userRoomsKey(userID))
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", userID, err)
	}
	var set memberSet
	if it.Found() {
		if err := decode(it, &set); err != nil {
			return nil, err
		}
	}
	ids := set.ids()
	keys := make([]string, 0, 2*len(ids))
	for _, id := range ids {
		keys = append(keys, roomKey(id), memberKey(id, userID))
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", userID, err)
	}
	out := make([]api.Room, 0, len(ids))
	for i := 0; i < len(items); i += 2 {
		if !items[i].Found() {
			continue
		}
		var head roomRecord
		if err := decode(items[i], &head); err != nil {
			return nil, err
		}
		m, in, err := membership(head, items[i+1], userID)
		if err != nil {
			return nil, err
		}
		if !in {
			continue
		}
		for _, mk := range head.Tail.Marks { // a read marker not materialized yet
			if mk.UserID == userID && mk.Seq > m.ReadSeq && m.Seq <= mk.Seq {
				m.ReadSeq, m.ReadMsgs = mk.Seq, mk.Msgs
			}
		}
		room := head.api()
		room.ReadSeq = m.ReadSeq
		room.Unread = max(head.Messages-m.ReadMsgs, 0)
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

// Members lists a room's member ids. A non-empty asUser must be a member.
func (s *Service) Members(ctx context.Context, asUser, roomID string) ([]string, error) {
	head, err := s.access(ctx, asUser, roomID)
	if err != nil {
		return nil, err
	}
	it, err := s.getItem(ctx, membersKey(roomID))
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	var set memberSet
	if it.Found() {
		if err := decode(it, &set); err != nil {
			return nil, err
		}
	}
	for _, op := range head.Tail.Members {
		set.apply(op.UserID, op.Seq, op.In)
	}
	return set.ids(), nil
}

// Room returns a room's record without a membership check, for internal
// callers (the notification service).
func (s *Service) Room(ctx context.Context, roomID string) (api.Room, error) {
	head, err := s.access(ctx, "", roomID)
	if err != nil {
		return api.Room{}, err
	}
	return head.api(), nil
}

// access reads a room and, when asUser is not empty, checks that asUser is
// a member: 404 for an unknown room, 403 for a non-member.
func (s *Service) access(ctx context.Context, asUser, roomID string) (roomRecord, error) {
	var head roomRecord
	if validate.RoomID(roomID) != nil {
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
	if err := decode(items[0], &head); err != nil {
		return head, err
	}
	if asUser != "" {
		_, in, err := membership(head, items[1], asUser)
		if err != nil {
			return head, err
		}
		if !in {
			return head, errNotMember
		}
	}
	return head, nil
}

// MarkRead moves userID's read marker in a room to seq (capped at the
// room's last seq). It never moves backwards.
func (s *Service) MarkRead(ctx context.Context, userID, roomID string, seq int64) error {
	if seq < 0 {
		return apierror.Invalidf("invalid_seq", "seq must not be negative")
	}
	head, err := s.access(ctx, userID, roomID)
	if err != nil {
		return err
	}
	seq = min(seq, head.LastSeq)
	if seq < 1 {
		return nil
	}
	msgs := head.Messages
	if rec, ok := head.tailEvent(seq); ok {
		msgs = rec.Msgs
	} else if seq < head.LastSeq {
		it, err := s.store.Get(ctx, eventKey(roomID, seq))
		if err != nil {
			return fmt.Errorf("event %d of room %s: %w", seq, roomID, err)
		}
		var rec eventRecord
		if err := decode(it, &rec); err != nil {
			return err
		}
		msgs = rec.Msgs
	}
	// The member's own record may still be in the head's tail (a join not
	// materialized yet): materialize it first, so the marker has a key.
	if err := s.materialize(ctx, roomRecord{ID: head.ID, Tail: tail{Members: head.Tail.Members}}); err != nil {
		return err
	}
	return s.advanceMarker(ctx, roomID, mark{UserID: userID, Seq: seq, Msgs: msgs})
}
