package hub

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/papochat/papo/api"
)

// shards splits the routing tables so that connections and events of
// different rooms and users never wait on one lock. Delivery itself takes
// only the room's own lock.
const shards = 64

var seed = maphash.MakeSeed()

func shardOf(key string) int { return int(maphash.String(seed, key) % shards) }

// room is one routed room: the connections of its local members and the
// replica's delivery state for it. Lock order: roomShard.mu, room.mu,
// userShard.mu, conn.mu.
type room struct {
	id string

	mu sync.Mutex
	// head is the highest seq delivered, gap-free. It is written under mu
	// and read without it by connections comparing their cursor.
	head     atomic.Int64
	pending  map[int64]api.Event
	fetching bool
	conns    map[*conn]struct{}
	dead     bool // removed from the table; a new room object replaces it
}

func newRoom(id string, head int64) *room {
	r := &room{id: id, pending: map[int64]api.Event{}, conns: map[*conn]struct{}{}}
	r.head.Store(head)
	return r
}

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]*room
}

type roomTable struct{ s [shards]roomShard }

func (t *roomTable) init() {
	for i := range t.s {
		t.s[i].rooms = map[string]*room{}
	}
}

// get returns the routed room, or nil.
func (t *roomTable) get(id string) *room {
	s := &t.s[shardOf(id)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rooms[id]
}

// all returns every routed room.
func (t *roomTable) all() []*room {
	var out []*room
	for i := range t.s {
		s := &t.s[i]
		s.mu.RLock()
		for _, r := range s.rooms {
			out = append(out, r)
		}
		s.mu.RUnlock()
	}
	return out
}

// attach adds c to room id with cursor seq (the last seq c has seen),
// creating the room with head seq when this replica did not route it.
func (t *roomTable) attach(id string, c *conn, seq int64) {
	s := &t.s[shardOf(id)]
	s.mu.Lock()
	r := s.rooms[id]
	if r == nil {
		r = newRoom(id, seq)
		s.rooms[id] = r
	}
	r.mu.Lock()
	s.mu.Unlock()
	defer r.mu.Unlock()
	r.conns[c] = struct{}{}
	c.join(r, seq)
}

// ensure returns room id, creating it with head seq if absent.
func (t *roomTable) ensure(id string, head int64) *room {
	s := &t.s[shardOf(id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[id]
	if r == nil {
		r = newRoom(id, head)
		s.rooms[id] = r
	}
	return r
}

// detach removes c from room id and drops the room when it is empty.
func (t *roomTable) detach(id string, c *conn) {
	s := &t.s[shardOf(id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[id]
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
	c.leave(r)
	if len(r.conns) == 0 && !r.fetching {
		r.dead = true
		delete(s.rooms, id)
	}
}

// release drops room r if nobody is in it any more.
func (t *roomTable) release(r *room) {
	s := &t.s[shardOf(r.id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) == 0 && !r.fetching && !r.dead && s.rooms[r.id] == r {
		r.dead = true
		delete(s.rooms, r.id)
	}
}

// user is one user's connections on this replica.
type user struct {
	conns  map[*conn]struct{}
	typing map[string]int64 // room → unix nanos of the last typing signal
}

type userShard struct {
	mu    sync.Mutex
	users map[string]*user
}

type userTable struct{ s [shards]userShard }

func (t *userTable) init() {
	for i := range t.s {
		t.s[i].users = map[string]*user{}
	}
}

// add registers c unless its user already has limit connections.
func (t *userTable) add(c *conn, limit int) bool {
	s := &t.s[shardOf(c.userID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[c.userID]
	if u == nil {
		u = &user{conns: map[*conn]struct{}{}, typing: map[string]int64{}}
		s.users[c.userID] = u
	}
	if len(u.conns) >= limit {
		return false
	}
	u.conns[c] = struct{}{}
	return true
}

func (t *userTable) remove(c *conn) {
	s := &t.s[shardOf(c.userID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[c.userID]; u != nil {
		delete(u.conns, c)
		if len(u.conns) == 0 {
			delete(s.users, c.userID)
		}
	}
}

// conns returns a snapshot of userID's connections.
func (t *userTable) conns(userID string) []*conn {
	s := &t.s[shardOf(userID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u == nil {
		return nil
	}
	out := make([]*conn, 0, len(u.conns))
	for c := range u.conns {
		out = append(out, c)
	}
	return out
}

func (t *userTable) count(userID string) int {
	s := &t.s[shardOf(userID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[userID]; u != nil {
		return len(u.conns)
	}
	return 0
}

// allowTyping reports whether userID may signal typing in roomID now,
// recording it when so.
func (t *userTable) allowTyping(userID, roomID string, now, every int64) bool {
	s := &t.s[shardOf(userID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u == nil {
		return false
	}
	if last, ok := u.typing[roomID]; ok && now-last < every {
		return false
	}
	u.typing[roomID] = now
	return true
}

// each calls f for every connection, outside the shard locks.
func (t *userTable) each(f func(*conn)) {
	for i := range t.s {
		s := &t.s[i]
		s.mu.Lock()
		var cs []*conn
		for _, u := range s.users {
			for c := range u.conns {
				cs = append(cs, c)
			}
		}
		s.mu.Unlock()
		for _, c := range cs {
			f(c)
		}
	}
}
