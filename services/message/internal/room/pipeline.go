package room

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// stage runs f over what is pushed to it, in order, with everything that
// waits taken in one call: while f runs, pushes queue up, and the next
// call takes them all. A goroutine runs only while something waits (like
// the writer's leader), so a stage needs no stopping.
type stage[T any] struct {
	f func([]T)

	mu      sync.Mutex
	queue   []T
	running bool
}

func newStage[T any](f func([]T)) *stage[T] { return &stage[T]{f: f} }

func (s *stage[T]) push(x T) {
	s.mu.Lock()
	s.queue = append(s.queue, x)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

// idle reports whether nothing waits and nothing runs.
func (s *stage[T]) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.running && len(s.queue) == 0
}

func (s *stage[T]) drain() {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.f(batch)
	}
}

// idle reports whether no round waits, runs, or is on its way to the
// broker or the store.
func (w *writer) idle() bool {
	w.mu.Lock()
	busy := w.running || len(w.queue) > 0
	w.mu.Unlock()
	return !busy && w.announcer.idle() && w.materializer.idle()
}

// Quiesce waits until every submission taken so far is committed,
// announced and materialized (or failed at it), or ctx ends: a replica
// that stops calls it after its last request, and tests call it to see
// the store as the pipeline leaves it.
func (s *Service) Quiesce(ctx context.Context) error {
	s.writer.flushMarkers()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !s.writer.idle() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the append pipeline: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// isPending reports whether token names a round of this replica whose
// materialization is on its way.
func (w *writer) isPending(token string) bool {
	if token == "" {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending[token]
}

func (w *writer) setPending(token string, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.pending[token] = true
	} else {
		delete(w.pending, token)
	}
}

// materializedThrough records that every event of the room up to seq is
// in its event key.
func (w *writer) materializedThrough(roomID string, seq int64) {
	if prev, ok := w.materialized.Get(roomID); !ok || seq > prev {
		w.materialized.Add(roomID, seq)
	}
}

// alone runs f while no round runs, holding rounds off meanwhile (what
// queues waits, and is led once f returns); it reports false, without
// running f, when a round runs.
func (w *writer) alone(f func()) bool {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return false
	}
	w.running = true
	w.mu.Unlock()
	f()
	w.lead()
	return true
}
