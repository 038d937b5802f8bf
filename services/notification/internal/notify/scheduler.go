package notify

import (
	"sync"
	"time"
)

// slot is one user's window in one room.
type slot struct{ room, user string }

// scheduler remembers when this replica must flush each window it
// opened. It is in memory: a window whose replica stops is taken over by
// the next replica that counts an event into it after its due time.
type scheduler struct {
	mu   sync.Mutex
	due  map[slot]time.Time
	wake chan struct{}
}

func newScheduler() *scheduler {
	return &scheduler{due: map[slot]time.Time{}, wake: make(chan struct{}, 1)}
}

// add schedules s at t, or earlier if it was already due earlier.
func (s *scheduler) add(sl slot, t time.Time) {
	s.mu.Lock()
	if old, ok := s.due[sl]; !ok || t.Before(old) {
		s.due[sl] = t
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// popDue removes and returns the slots due at now.
func (s *scheduler) popDue(now time.Time) []slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []slot
	for sl, t := range s.due {
		if !now.Before(t) {
			out = append(out, sl)
			delete(s.due, sl)
		}
	}
	return out
}

// next returns the earliest due time.
func (s *scheduler) next() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first time.Time
	for _, t := range s.due {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, !first.IsZero()
}

// pending returns how many windows are scheduled.
func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due)
}
