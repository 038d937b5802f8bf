package room

import (
	"context"
	"sync"
	"time"
)

// Scrollback pages — a page of the events below a seq the reader already
// knows, as a client asks for when it opens a room or scrolls up — are by
// far the most frequent read, and their events never change. What a page
// needs of the room besides its events is the head (last_seq, the deleted
// messages, the unmaterialized tail) and the reader's membership; reading
// those from the store costs a sidecar round trip on every page. So a
// member's scrollback page may be served from a head this replica read at
// most ScrollbackTTL ago:
//
//   - the events of the page are exactly those of a fresh read: a cached
//     head is used only when the whole page lies at or below its last_seq,
//     and committed events never change;
//   - last_seq may lag by up to ScrollbackTTL (the next page, or the live
//     stream, brings what came after);
//   - a message deleted within ScrollbackTTL may still be served with its
//     text to a reader who could read it a moment earlier;
//   - a member who leaves loses access within ScrollbackTTL, and at once
//     for reads through the replica that committed the leave (every commit
//     in a room drops its cached head there). Leaving is the only way to
//     lose membership, and what is served is history the reader could
//     read while a member.
//
// Every other read (after=, the latest page, internal reads for ws gap
// filling and resumes) reads the head from the store.
const (
	ScrollbackTTL   = time.Second
	ScrollbackRooms = 10000
)

// scrollEntry is a head read at one moment and the users it was checked
// to admit.
type scrollEntry struct {
	head roomRecord

	mu      sync.Mutex
	members map[string]bool
}

func (e *scrollEntry) admits(userID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.members[userID]
}

func (e *scrollEntry) admit(userID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.members[userID] = true
}

// scrollbackHead returns the head to serve userID's page of events below
// seq before from, checking membership: from the cache when a head read
// within ScrollbackTTL covers the page and admitted userID, else from the
// store (and then cached).
func (s *Service) scrollbackHead(ctx context.Context, userID, roomID string, before int64) (roomRecord, error) {
	e, ok := s.scrollback.Get(roomID)
	if ok && before-1 <= e.head.LastSeq && e.admits(userID) {
		return e.head, nil
	}
	head, err := s.access(ctx, userID, roomID)
	if err != nil {
		return head, err
	}
	if !ok || e.head.LastSeq != head.LastSeq {
		e = &scrollEntry{head: head, members: map[string]bool{}}
		s.scrollback.Add(roomID, e)
	}
	e.admit(userID)
	return head, nil
}

// committed drops what this replica cached of a room that just changed,
// and a compaction it planned for the tail this commit replaced.
func (s *Service) committed(roomID string) {
	s.scrollback.Remove(roomID)
	s.cancelCompaction(roomID)
}
