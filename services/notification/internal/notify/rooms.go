package notify

import (
	"context"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/papochat/papo/api"
)

// roomCache keeps the rooms this replica looked up (members, name, kind)
// for at most ttl each and at most max rooms, least recently used out
// first, and follows the member_joined and member_left events that pass
// through this replica. The replicas share room.events as competing
// consumers, so a replica sees only some of a room's membership changes:
// the TTL bounds how long it may miss the others (a joiner not pushed, a
// leaver still pushed), as it bounds a change made while the room was
// being looked up.
type roomCache struct {
	src Rooms
	ttl time.Duration
	now func() time.Time
	lru *lru.Cache[string, *cachedRoom]
}

type cachedRoom struct {
	mu      sync.Mutex
	room    Room
	expires time.Time
	// changed holds, per user, the seq of the last membership event
	// applied since the lookup, so an older one arriving later (a
	// redelivery) changes nothing.
	changed map[string]int64
}

func newRoomCache(src Rooms, max int, ttl time.Duration, now func() time.Time) *roomCache {
	c, err := lru.New[string, *cachedRoom](max)
	if err != nil {
		panic(err) // max is checked by Options.defaults
	}
	return &roomCache{src: src, ttl: ttl, now: now, lru: c}
}

// get returns the room from the cache, or looks it up.
func (c *roomCache) get(ctx context.Context, roomID string) (Room, error) {
	if r, ok := c.lru.Get(roomID); ok {
		r.mu.Lock()
		room, fresh := r.room, c.now().Before(r.expires)
		r.mu.Unlock()
		if fresh {
			return room, nil
		}
	}
	room, err := c.src.Room(ctx, roomID)
	if err != nil {
		return Room{}, err
	}
	c.lru.Add(roomID, &cachedRoom{room: room, expires: c.now().Add(c.ttl), changed: map[string]int64{}})
	return room, nil
}

// observe applies a member_joined or member_left event to the cached
// room, if any. An event newer than the lookup changes the members. One
// the lookup already covered is checked against it: if they disagree, the
// event is an old one arriving late or the lookup raced the change, and
// the room is looked up again at its next use.
func (c *roomCache) observe(ev api.Event) {
	r, ok := c.lru.Peek(ev.RoomID)
	if !ok || ev.UserID == "" {
		return
	}
	joined := ev.Type == api.EventMemberJoined
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.changed[ev.UserID]; ok && ev.Seq <= last {
		return
	}
	member := slices.Contains(r.room.Members, ev.UserID)
	if ev.Seq <= r.room.LastSeq {
		if member != joined {
			r.expires = time.Time{}
		}
		return
	}
	r.changed[ev.UserID] = ev.Seq
	switch {
	case joined && !member:
		// A new slice: a Room handed out earlier keeps its members.
		r.room.Members = append(slices.Clip(r.room.Members), ev.UserID)
	case !joined && member:
		r.room.Members = slices.DeleteFunc(slices.Clone(r.room.Members), func(u string) bool { return u == ev.UserID })
	}
}
