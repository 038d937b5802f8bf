// Package wait is the one pause that gives way to a context (For: a
// retry's backoff, a poll's interval, a restart's delay) and the one
// background loop on a ticker (Every).
package wait

import (
	"context"
	"time"
)

// For waits d, or until ctx ends, whichever comes first; it reports
// whether the whole d passed (false: ctx ended, stop). The timer is
// released either way.
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Every calls f every d (the first call one d from now) until ctx is
// done; a call in progress when ctx ends is not interrupted, f is
// expected to take ctx itself. A background loop's ticker, in one place.
func Every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
