package hub

import "sync"

// frame is one encoded server frame waiting for the writer: its type, and
// for a live event its commit time (unix nanoseconds, else 0), so the
// writer can count it and measure its delivery latency.
type frame struct {
	b         []byte
	kind      outKind
	committed int64
}

// queue holds a connection's outgoing frames until its writer sends them.
// It is bounded in bytes, not frames, so a few large frames and many small
// ones cost the same memory; a push never blocks.
type queue struct {
	mu     sync.Mutex
	frames []frame
	size   int
	limit  int
	closed bool
	ready  chan struct{} // one pending wake-up for the writer
}

func newQueue(limit int) *queue {
	return &queue{limit: limit, ready: make(chan struct{}, 1)}
}

type pushResult int

const (
	pushed pushResult = iota
	overflow
	queueClosed
)

// push appends f unless the queue is closed or f would take it over its
// limit.
func (q *queue) push(f frame) pushResult {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return queueClosed
	}
	if q.size+len(f.b) > q.limit {
		q.mu.Unlock()
		return overflow
	}
	q.frames = append(q.frames, f)
	q.size += len(f.b)
	q.mu.Unlock()
	q.wake()
	return pushed
}

// take removes and returns every queued frame, and whether the queue was
// closed.
func (q *queue) take() ([]frame, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.frames
	q.frames, q.size = nil, 0
	return f, q.closed
}

// bytes is how many bytes wait in the queue.
func (q *queue) bytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// close makes further pushes fail and wakes the writer.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.frames, q.size = nil, 0
	q.mu.Unlock()
	q.wake()
}

func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
