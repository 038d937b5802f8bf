package room

import (
	"context"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

// Materializing a committed tail writes its events and idempotency keys:
// blind, idempotent writes of what a head already committed. They are
// correct in any transaction, even one whose ETag check fails: on Redis a
// failed transaction is not undone (the writes land, which is harmless),
// on the SQL stores it rolls back (nothing lands, and they are written
// later). So when rounds follow each other, the materializer does not
// write alone: it offers its writes to the next round, whose head
// transaction carries them (commitHeads), and writes alone only when no
// round comes — nothing running for rideWait — or the round's transaction
// failed. One transaction (one commit, one fsync) per round instead of
// two. Guarded writes (read markers) never ride: their ETag failure would
// fail the heads.
const (
	// rideWait is how long the materializer waits, while no round runs,
	// for one to take its writes; a quiet room is materialized that much
	// later (writer.rideWait; tests change it).
	rideWait = 3 * time.Millisecond
	// maxRideWait bounds the wait while rounds run without taking them
	// (rounds that commit nothing).
	maxRideWait = 100 * time.Millisecond
)

// ride is a materialization's writes offered to the next round.
type ride struct {
	ops   []statestore.Op
	taken bool          // by a round; guarded by writer.mu
	done  chan struct{} // closed by the round that took it, err set
	err   error
}

// rideOn offers ops to the next round's head transaction and reports
// whether they were written there; when not (no round came, or its
// transaction failed), the caller writes them itself.
func (w *writer) rideOn(ctx context.Context, ops []statestore.Op) bool {
	r := &ride{ops: ops, done: make(chan struct{})}
	w.mu.Lock()
	w.ride = r
	w.mu.Unlock()
	start := time.Now()
	wait := w.rideWait
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return r.err == nil
		case <-ctx.Done():
		case <-t.C:
		}
		w.mu.Lock()
		if r.taken {
			w.mu.Unlock()
			<-r.done // the round settles it, whatever its context
			return r.err == nil
		}
		if w.running && ctx.Err() == nil && time.Since(start) < max(maxRideWait, wait) {
			// A round runs: it takes the writes when it commits.
			w.mu.Unlock()
			t.Reset(wait)
			continue
		}
		w.ride = nil
		w.mu.Unlock()
		return false
	}
}

// takeRide takes the writes a materialization offers, if any.
func (w *writer) takeRide() *ride {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.ride
	if r == nil {
		return nil
	}
	r.taken, w.ride = true, nil
	return r
}

// settle tells the materializer whether its writes landed with the heads.
func (r *ride) settle(err error) {
	if r == nil {
		return
	}
	r.err = err
	close(r.done)
}
