package room

import (
	"context"
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/papochat/papo/platform/statestore"
)

// A round needs each sender's membership, which costs a member key in the
// round's BulkGet per submission. Membership changes only through a
// commit of the room's head (a join or leave is its own commit, with the
// op in its tail), and a head's last_seq names the log it ends, so the
// membership a round found under a head with last_seq L is still the
// membership under any head with last_seq L, and under the head the round
// commits on top of it (an append changes no membership). A replica
// remembers, per room, the membership of the senders its rounds decided
// and the last_seq it holds for (memberCache); a round leaves out the
// member keys of senders it remembers and, when the head it reads has
// another last_seq (another replica, or a join or leave, committed
// meanwhile), reads them in a second BulkGet before deciding.
//
// Where rooms are written by several replicas in turn, that second read
// would cost a call in most rounds: a replica that finds its memory stale
// too often (memberCache.trust) reads member keys with the heads again, and goes
// back to leaving them out once its memory would have held.
const (
	// memberRooms bounds how many rooms' memberships a replica remembers.
	memberRooms = 100_000
	// memberTrustMax and memberMissCost shape memberCache.trust: a stale memory
	// costs memberMissCost, a memory that held earns one, and keys are
	// left out while the score is not negative.
	memberTrustMax = 64
	memberMissCost = 8
)

// knownMembers is one room's remembered membership.
type knownMembers struct {
	seq int64 // the head's last_seq it holds for
	// of are the senders' effective member records (membership), as of
	// seq.
	of map[string]memberRecord
}

// memberCache is a replica's memory of its rooms' membership. Only the
// round leader uses it, one round at a time.
type memberCache struct {
	rooms *lru.Cache[string, *knownMembers]
	trust int
}

func newMemberCache() *memberCache {
	c, err := lru.New[string, *knownMembers](memberRooms)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &memberCache{rooms: c}
}

// skipped returns the member keys a round may leave out of its BulkGet:
// those of senders whose membership is remembered, while trusted.
func (c *memberCache) skipped(rooms []*roomRound) map[string]bool {
	if c.trust < 0 {
		return nil
	}
	skip := map[string]bool{}
	for _, rr := range rooms {
		k, ok := c.rooms.Peek(rr.id)
		if !ok {
			continue
		}
		for _, q := range rr.subs {
			sender := q.req.subs[q.i].SenderID
			if _, ok := k.of[sender]; ok {
				skip[memberKey(rr.id, sender)] = true
			}
		}
	}
	return skip
}

// fill puts the remembered member records of the keys skip left out into
// items, for each room whose head (decoded) has the last_seq they hold
// for, and returns the keys to read because it has not, with their rooms.
// It scores the memory of every room of the round, skipped or not, so
// trust learns whether skipping would have held.
func (c *memberCache) fill(rooms []*roomRound, items map[string]statestore.Item, skip map[string]bool) (stale []string, of []*roomRound) {
	for _, rr := range rooms {
		if rr.failed != nil || !rr.headIt.Found() {
			continue
		}
		k, ok := c.rooms.Get(rr.id)
		if !ok {
			continue
		}
		held := k.seq == rr.head.LastSeq
		if held {
			c.trust = min(c.trust+1, memberTrustMax)
		} else {
			c.trust -= memberMissCost
			c.rooms.Remove(rr.id)
		}
		n := len(stale)
		for _, q := range rr.subs {
			sender := q.req.subs[q.i].SenderID
			key := memberKey(rr.id, sender)
			if !skip[key] {
				continue
			}
			if m, ok := k.of[sender]; ok && held {
				items[key] = statestore.Item{Key: key, Value: encode(m)}
				continue
			}
			stale = append(stale, key)
			skip[key] = false // read once
		}
		if len(stale) > n {
			of = append(of, rr)
		}
	}
	return stale, of
}

// readStale reads the member keys the memory could not answer; when that
// fails, so do their rooms.
func (w *writer) readStale(ctx context.Context, keys []string, of []*roomRound, items map[string]statestore.Item) {
	if len(keys) == 0 {
		return
	}
	w.s.metrics.memberRereads.Inc()
	list, err := w.s.bulkGet(ctx, keys...)
	if err != nil {
		for _, rr := range of {
			rr.failed = fmt.Errorf("read members of room %s: %w", rr.id, err)
		}
		return
	}
	for _, it := range list {
		items[it.Key] = it
	}
}

// learn remembers the membership each room's senders were decided by, as
// of the head the room now has: the one the round committed (an append
// changes no membership), or the one it read when it committed nothing.
// A room whose commit failed or lost a race is forgotten.
func (c *memberCache) learn(rooms []*roomRound) {
	for _, rr := range rooms {
		if rr.failed != nil || len(rr.subs) == 0 || !rr.headIt.Found() || (rr.d.changed && !rr.committed) {
			c.rooms.Remove(rr.id)
			continue
		}
		seq := rr.head.LastSeq
		if rr.committed {
			seq = rr.d.next.LastSeq
		}
		of := map[string]memberRecord{}
		if k, ok := c.rooms.Peek(rr.id); ok && k.seq == rr.head.LastSeq {
			of = k.of
		}
		for _, q := range rr.subs {
			sender := q.req.subs[q.i].SenderID
			// The effective record: the one read (or remembered) with
			// what the head's tail changes.
			m, _, err := membership(rr.head, rr.items[memberKey(rr.id, sender)], sender)
			if err != nil {
				delete(of, sender)
				continue
			}
			of[sender] = m
		}
		c.rooms.Add(rr.id, &knownMembers{seq: seq, of: of})
	}
}
