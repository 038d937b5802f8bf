// Package upstream asks the other papo services, through Dapr service
// invocation, what a push decision needs: a room's members (message),
// who is online (presence) and usernames (auth, cached).
package upstream

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/services/notification/internal/notify"
)

// Invoker calls a method on another app-id; *invoke.Client implements it.
type Invoker interface {
	Do(ctx context.Context, appID, method, path string, header http.Header, in, out any) error
}

// Rooms is notify.Rooms over the message service's
// GET /internal/v1/rooms/{id}/members.
type Rooms struct {
	Invoke Invoker
	AppID  string
}

// membersAnswer is the members route's answer. Room is read when the
// message service includes it (name and kind for the push text); without
// it, DMs are known by their id prefix.
type membersAnswer struct {
	Members []string  `json:"members"`
	Room    *api.Room `json:"room,omitempty"`
}

// dmPrefix starts the id of every DM room (the message service derives
// DM ids from the pair of users).
const dmPrefix = "dm_"

// Room implements notify.Rooms.
func (r Rooms) Room(ctx context.Context, roomID string) (notify.Room, error) {
	var out membersAnswer
	err := r.Invoke.Do(ctx, r.AppID, http.MethodGet, "/internal/v1/rooms/"+url.PathEscape(roomID)+"/members", nil, nil, &out)
	if err != nil {
		return notify.Room{}, err
	}
	room := notify.Room{ID: roomID, Members: out.Members}
	if out.Room != nil {
		room.Name, room.Kind, room.LastSeq = out.Room.Name, out.Room.Kind, out.Room.LastSeq
	}
	if room.Kind == "" && strings.HasPrefix(roomID, dmPrefix) {
		room.Kind = api.RoomDM
	}
	return room, nil
}

// Presence is notify.Presence over the presence service's
// GET <Path>?user_ids=a,b, answering {"presence":[{"user_id","status"}]}.
type Presence struct {
	Invoke Invoker
	AppID  string
	Path   string
}

// presenceBatch bounds the ids in one request (URL length).
const presenceBatch = 100

// Online implements notify.Presence.
func (p Presence) Online(ctx context.Context, userIDs []string) (map[string]bool, error) {
	out := make(map[string]bool, len(userIDs))
	for start := 0; start < len(userIDs); start += presenceBatch {
		ids := userIDs[start:min(start+presenceBatch, len(userIDs))]
		var ans struct {
			Presence []struct {
				UserID string `json:"user_id"`
				Status string `json:"status"`
			} `json:"presence"`
		}
		q := url.Values{"user_ids": {strings.Join(ids, ",")}}
		if err := p.Invoke.Do(ctx, p.AppID, http.MethodGet, p.Path+"?"+q.Encode(), nil, nil, &ans); err != nil {
			return nil, err
		}
		for _, s := range ans.Presence {
			out[s.UserID] = s.Status == "online"
		}
	}
	return out, nil
}

// Users is notify.Users over the auth service's GET <Path>/{id}
// (answering {"user":{…}}), with a bounded cache: usernames do not
// change, so a hit never goes stale.
type Users struct {
	invoke Invoker
	appID  string
	path   string
	ttl    time.Duration
	max    int
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	name    string
	expires time.Time
}

// NewUsers returns a Users client caching up to max names for ttl.
func NewUsers(inv Invoker, appID, path string, max int, ttl time.Duration) *Users {
	return &Users{invoke: inv, appID: appID, path: strings.TrimRight(path, "/"), ttl: ttl, max: max,
		now: time.Now, cache: map[string]cached{}}
}

// Usernames implements notify.Users. Unknown users are left out.
func (u *Users) Usernames(ctx context.Context, userIDs []string) (map[string]string, error) {
	out := make(map[string]string, len(userIDs))
	var missing []string
	now := u.now()
	u.mu.Lock()
	for _, id := range userIDs {
		if c, ok := u.cache[id]; ok && now.Before(c.expires) {
			out[id] = c.name
		} else {
			missing = append(missing, id)
		}
	}
	u.mu.Unlock()
	for _, id := range missing {
		var ans struct {
			User api.User `json:"user"`
		}
		if err := u.invoke.Do(ctx, u.appID, http.MethodGet, u.path+"/"+url.PathEscape(id), nil, nil, &ans); err != nil {
			return nil, err
		}
		out[id] = ans.User.Username
		u.mu.Lock()
		if len(u.cache) >= u.max {
			// Dropping the whole cache is crude but bounded, and a
			// refill costs one call per user.
			clear(u.cache)
		}
		u.cache[id] = cached{name: ans.User.Username, expires: now.Add(u.ttl)}
		u.mu.Unlock()
	}
	return out, nil
}
