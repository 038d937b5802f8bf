// Package wait is the one pause that gives way to a context: a retry's
// backoff, a poll's interval, a restart's delay.
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
