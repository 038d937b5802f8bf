package room

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore"
)

// Nobody enters a private room without saying yes: a member's add is an
// invitation, kept in the invitee's list until the invitee joins the room
// (the existing membership path: POST /rooms/{id}/join) or declines it.
// Nothing enters the room's log until then. docs/message.md,
// "Invitations".

// invitesKey holds a user's pending invitations (newest last).
func invitesKey(userID string) string { return "invites|" + url.QueryEscape(userID) }

// MaxInvitations is how many pending invitations a user keeps; a new one
// past it drops the oldest, so invitations from strangers cannot crowd
// out the rest for long, nor grow the key without bound.
const MaxInvitations = 50

// DefaultMaxRoomsPerUser is how many rooms (DMs apart) a user may be in
// unless SetMaxRoomsPerUser says otherwise.
const DefaultMaxRoomsPerUser = 1000

type invitation struct {
	RoomID    string    `json:"room_id"`
	InvitedBy string    `json:"invited_by"`
	At        time.Time `json:"at"`
}

type inviteList struct {
	Invites []invitation `json:"invites"`
}

func (l inviteList) find(roomID string) (invitation, bool) {
	i := slices.IndexFunc(l.Invites, func(in invitation) bool { return in.RoomID == roomID })
	if i < 0 {
		return invitation{}, false
	}
	return l.Invites[i], true
}

// without drops the invitation to roomID; it reports whether there was one.
func (l *inviteList) without(roomID string) bool {
	n := len(l.Invites)
	l.Invites = slices.DeleteFunc(l.Invites, func(in invitation) bool { return in.RoomID == roomID })
	return len(l.Invites) != n
}

// SetMaxRoomsPerUser sets the cap on the rooms (DMs apart) one user may
// be in: creating or joining one more is refused with too_many_rooms.
func (s *Service) SetMaxRoomsPerUser(n int) { s.maxRooms = n }

func errTooManyRooms(max int) error {
	return apierror.New(apierror.Conflict, "too_many_rooms", "a user may be in at most %d rooms; leave one first", max)
}

// roomCount counts the rooms (DMs apart) in a user's room set.
func roomCount(it statestore.Item) (int, error) {
	var set memberSet
	if it.Found() {
		if err := decode(it, &set); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, id := range set.ids() {
		if !strings.HasPrefix(id, "dm_") {
			n++
		}
	}
	return n, nil
}

// checkRoomCap refuses a user who is in the most rooms allowed already.
// The count is the user's materialized room set, so two joins at the
// same moment can pass the cap by one each: a bound, not an exact count.
func (s *Service) checkRoomCap(ctx context.Context, userID string) error {
	it, err := s.getItem(ctx, userRoomsKey(userID))
	if err != nil {
		return fmt.Errorf("rooms of %s: %w", userID, err)
	}
	n, err := roomCount(it)
	if err != nil {
		return err
	}
	if n >= s.maxRooms {
		return errTooManyRooms(s.maxRooms)
	}
	return nil
}

// AddMember lets a member bring another user in. Into a public room the
// user is added at once (anyone may join one anyway); into a private room
// the user is invited (Invitation set, nothing in the log) and enters by
// joining. A DM takes nobody else.
func (s *Service) AddMember(ctx context.Context, actorID, roomID, userID string) (api.Room, *api.Invitation, error) {
	if err := validate.UserID(userID); err != nil {
		return api.Room{}, nil, err
	}
	if validate.RoomID(roomID) != nil {
		return api.Room{}, nil, errRoomNotFound
	}
	items, err := s.bulkGet(ctx, roomKey(roomID), memberKey(roomID, actorID), memberKey(roomID, userID))
	if err != nil {
		return api.Room{}, nil, fmt.Errorf("read room %s: %w", roomID, err)
	}
	if !items[0].Found() {
		return api.Room{}, nil, errRoomNotFound
	}
	var head roomRecord
	if err := decode(items[0], &head); err != nil {
		return api.Room{}, nil, err
	}
	_, actorIn, err := membership(head, items[1], actorID)
	if err != nil {
		return api.Room{}, nil, err
	}
	if actorID != userID && !actorIn {
		return api.Room{}, nil, errNotMember // first: a non-member learns nothing of the room
	}
	_, userIn, err := membership(head, items[2], userID)
	if err != nil {
		return api.Room{}, nil, err
	}
	if head.Kind != api.RoomPrivate {
		if head.Kind == api.RoomPublic && !userIn {
			if err := s.checkRoomCap(ctx, userID); err != nil {
				return api.Room{}, nil, err
			}
		}
		room, err := s.addMember(ctx, actorID, roomID, userID, false)
		return room, nil, err
	}
	if !actorIn {
		return api.Room{}, nil, errNotMember
	}
	if userIn {
		return head.api(), nil, nil // already a member: nothing to do
	}
	in := invitation{RoomID: roomID, InvitedBy: actorID, At: s.now().UTC()}
	err = update(ctx, s, invitesKey(userID), func(l *inviteList, _ bool) bool {
		l.without(roomID) // an invitation again moves to the end
		l.Invites = append(l.Invites, in)
		if n := len(l.Invites); n > MaxInvitations {
			l.Invites = slices.Delete(l.Invites, 0, n-MaxInvitations)
		}
		return true
	})
	if err != nil {
		return api.Room{}, nil, fmt.Errorf("invite %s to room %s: %w", userID, roomID, err)
	}
	room := head.api()
	return room, &api.Invitation{Room: room, UserID: userID, InvitedBy: actorID, CreatedAt: in.At}, nil
}

// Join adds userID to a public room, or to a private room userID was
// invited to (accepting the invitation). Joining a room one is in already
// is a no-op; a private room without an invitation, or a DM, is refused.
func (s *Service) Join(ctx context.Context, userID, roomID string) (api.Room, error) {
	if validate.RoomID(roomID) != nil {
		return api.Room{}, errRoomNotFound
	}
	items, err := s.bulkGet(ctx, invitesKey(userID), userRoomsKey(userID))
	if err != nil {
		return api.Room{}, fmt.Errorf("join room %s: %w", roomID, err)
	}
	var invites inviteList
	if items[0].Found() {
		if err := decode(items[0], &invites); err != nil {
			return api.Room{}, err
		}
	}
	_, invited := invites.find(roomID)
	var set memberSet
	if items[1].Found() {
		if err := decode(items[1], &set); err != nil {
			return api.Room{}, err
		}
	}
	if !slices.Contains(set.ids(), roomID) {
		n, err := roomCount(items[1])
		if err != nil {
			return api.Room{}, err
		}
		if n >= s.maxRooms {
			return api.Room{}, errTooManyRooms(s.maxRooms)
		}
	}
	room, err := s.addMember(ctx, userID, roomID, userID, invited)
	if err != nil {
		return api.Room{}, err
	}
	if invited {
		if err := s.dropInvitation(ctx, userID, roomID); err != nil {
			// The join is done; a stale invitation is not listed (the
			// list skips rooms one is in) and joining again is a no-op.
			s.log.WarnContext(ctx, "accepted invitation not dropped", "room_id", roomID, "err", err)
		}
	}
	return room, nil
}

// Decline drops userID's invitation to a room (none is not an error).
func (s *Service) Decline(ctx context.Context, userID, roomID string) error {
	if validate.RoomID(roomID) != nil {
		return errRoomNotFound
	}
	return s.dropInvitation(ctx, userID, roomID)
}

func (s *Service) dropInvitation(ctx context.Context, userID, roomID string) error {
	err := update(ctx, s, invitesKey(userID), func(l *inviteList, found bool) bool {
		return found && l.without(roomID)
	})
	if err != nil {
		return fmt.Errorf("drop the invitation of %s to room %s: %w", userID, roomID, err)
	}
	return nil
}

// Invitations lists userID's pending invitations, newest first, skipping
// rooms userID is in already.
func (s *Service) Invitations(ctx context.Context, userID string) ([]api.Invitation, error) {
	it, err := s.getItem(ctx, invitesKey(userID))
	if err != nil {
		return nil, fmt.Errorf("invitations of %s: %w", userID, err)
	}
	var l inviteList
	if it.Found() {
		if err := decode(it, &l); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, 2*len(l.Invites))
	for _, in := range l.Invites {
		keys = append(keys, roomKey(in.RoomID), memberKey(in.RoomID, userID))
	}
	items, err := s.bulkGet(ctx, keys...)
	if err != nil {
		return nil, fmt.Errorf("invitations of %s: %w", userID, err)
	}
	out := []api.Invitation{}
	for i := len(l.Invites) - 1; i >= 0; i-- {
		head, member := items[2*i], items[2*i+1]
		if !head.Found() {
			continue
		}
		var r roomRecord
		if err := decode(head, &r); err != nil {
			return nil, err
		}
		if _, in, err := membership(r, member, userID); err != nil || in {
			if err != nil {
				return nil, err
			}
			continue
		}
		in := l.Invites[i]
		out = append(out, api.Invitation{Room: r.api(), UserID: userID, InvitedBy: in.InvitedBy, CreatedAt: in.At})
	}
	return out, nil
}
