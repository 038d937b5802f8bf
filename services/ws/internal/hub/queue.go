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
//
// The writer runs only while there is something to write: a push to an
// idle queue starts it, and it ends when the queue is empty, so an idle
// connection holds no writer goroutine (nor its stack).
type queue struct {
	mu      sync.Mutex
	frames  []frame // nil when empty: an idle queue holds no array
	size    int
	limit   int
	closed  bool
	held    bool   // no writer starts until release (the handshake is not done)
	writing bool   // a writer is draining the queue
	ended   bool   // the writer finished for good; nothing is written any more
	start   func() // starts a writer on its own goroutine
}

// newQueue returns a held queue: frames wait until release.
func newQueue(limit int, start func()) *queue {
	return &queue{limit: limit, start: start, held: true}
}

// release lets a writer start, at once if frames wait.
func (q *queue) release() {
	q.mu.Lock()
	q.held = false
	start := (len(q.frames) > 0 || q.closed) && q.claimLocked()
	q.mu.Unlock()
	if start {
		q.start()
	}
}

type pushResult int

const (
	pushed pushResult = iota
	overflow
	queueClosed
)

// push appends f unless the queue is closed or f would take it over its
// limit, and starts a writer unless one runs.
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
	start := q.claimLocked()
	q.mu.Unlock()
	if start {
		q.start()
	}
	return pushed
}

// claimLocked reports whether the caller must start a writer, marking one
// as running; q.mu is held.
func (q *queue) claimLocked() bool {
	if q.held || q.writing || q.ended {
		return false
	}
	q.writing = true
	return true
}

// take removes and returns every queued frame and whether the queue was
// closed. more is false when there was nothing to do: the writer must
// end, and the next push starts another. The queue keeps no array once
// drained, so an idle connection pays nothing for its frames' metadata.
func (q *queue) take() (frames []frame, closed, more bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 && !q.closed {
		q.writing = false
		return nil, false, false
	}
	f := q.frames
	q.frames, q.size = nil, 0
	return f, q.closed, true
}

// bytes is how many bytes wait in the queue.
func (q *queue) bytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// close makes further pushes fail, drops what is queued and has a writer
// send the close frame.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.frames, q.size = nil, 0
	start := q.claimLocked()
	q.mu.Unlock()
	if start {
		q.start()
	}
}

// end records that the writer finished for good (close frame sent, or a
// write failed): no writer starts again.
func (q *queue) end() {
	q.mu.Lock()
	q.ended, q.writing = true, false
	q.mu.Unlock()
}
