package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/wait"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
	"github.com/papochat/papo/services/notification/internal/push"
)

// shutdownGrace is how long Run lets flushes in flight finish after its
// context is done, before cancelling them.
const shutdownGrace = 10 * time.Second

// Run flushes windows as they close until ctx is done, then waits for
// the flushes in flight, up to shutdownGrace.
func (e *Engine) Run(ctx context.Context) error {
	sem := make(chan struct{}, e.opts.Workers)
	// Flushes outlive ctx a little: a push half sent at shutdown should
	// finish rather than be lost.
	flushCtx, cancelFlushes := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		done := make(chan struct{})
		go func() { e.inflight.Wait(); close(done) }()
		t := time.NewTimer(shutdownGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		}
		cancelFlushes()
		<-done
	}()
	// Windows whose replica stopped before flushing them (orphans.go).
	e.inflight.Add(1)
	go func() {
		defer e.inflight.Done()
		wait.Every(ctx, sweepEvery, func() {
			if err := e.SweepOrphans(flushCtx); err != nil && ctx.Err() == nil {
				e.Log.WarnContext(ctx, "sweep notification windows", "err", err)
			}
		})
	}()
	for {
		for _, s := range e.sched.popDue(e.opts.Now()) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			e.inflight.Add(1)
			go func() {
				defer func() { <-sem; e.inflight.Done() }()
				e.flushLogged(flushCtx, s)
			}()
		}
		wait := time.Minute
		if next, ok := e.sched.next(); ok {
			wait = max(next.Sub(e.opts.Now()), time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-e.sched.wake:
			t.Stop()
		}
	}
}

// FlushDue flushes every window this replica knows of that is due now,
// and returns when they are done. Run does the same on a timer; tests
// call it with a clock of their own.
func (e *Engine) FlushDue(ctx context.Context) {
	for _, s := range e.sched.popDue(e.opts.Now()) {
		e.flushLogged(ctx, s)
	}
}

func (e *Engine) flushLogged(ctx context.Context, s slot) {
	if err := e.flush(ctx, s); err != nil && ctx.Err() == nil {
		e.Log.ErrorContext(ctx, "flush notification window", "room_id", s.room, "user_id", s.user, "err", err)
		// The window is still in the store: try again a little later.
		e.sched.add(s, e.opts.Now().Add(e.opts.Backoff))
	}
}

// flush closes one window: it claims the window by deleting it with its
// ETag (of two replicas, one wins), then pushes to each device once.
func (e *Engine) flush(ctx context.Context, s slot) error {
	wk := windowKey(s.room, s.user)
	var w window
	claimed := false
	err := statestore.Retry(ctx, countAttempts, func() error {
		it, err := e.Store.Get(ctx, wk)
		if errors.Is(err, statestore.ErrNotFound) {
			return nil // flushed by another replica
		}
		if err != nil {
			return fmt.Errorf("read window: %w", err)
		}
		if err := json.Unmarshal(it.Value, &w); err != nil {
			return fmt.Errorf("decode window: %w", err)
		}
		if now := e.opts.Now(); now.Before(w.Due) {
			e.sched.add(s, w.Due)
			return nil
		}
		// A conflict means a late event was counted in: read it again.
		if err := e.Store.Write(ctx, statestore.Op{Key: wk, Delete: true, ETag: it.ETag}); err != nil {
			return fmt.Errorf("claim window: %w", err)
		}
		claimed = true
		return nil
	})
	if err != nil || !claimed {
		return err
	}
	// The decision is checked again at the end of the window: the user
	// may have muted the room or come online to read it meanwhile.
	modes, err := e.Modes.ForUsers(ctx, s.room, []string{s.user})
	if err != nil {
		return err
	}
	if m := modes[s.user]; m == mode.None || (m == mode.Mentions && w.Mentions == 0) {
		return nil
	}
	if w.Mentions == 0 {
		online, err := e.Presence.Online(ctx, []string{s.user})
		if err != nil {
			e.Log.WarnContext(ctx, "presence at flush; pushing anyway", "user_id", s.user, "err", err)
		} else if online[s.user] {
			return nil
		}
	}
	devs, err := e.Devices.ForUsers(ctx, []string{s.user})
	if err != nil {
		return err
	}
	if len(devs[s.user]) == 0 {
		// The index listed a user without a device (the last one went
		// while the window was open, or an index write raced a removal):
		// mend it, so their next messages cost nothing.
		if err := e.Devices.Sync(ctx, s.user); err != nil {
			e.Log.WarnContext(ctx, "mend the device index", "user_id", s.user, "err", err)
		}
		return nil
	}
	var sender string
	if w.LastSender != "" {
		if names, err := e.Users.Usernames(ctx, []string{w.LastSender}); err == nil {
			sender = names[w.LastSender]
		}
	}
	title, body := push.Text(w.RoomName, w.RoomKind, sender, w.Count, w.Mentions)
	for _, d := range devs[s.user] {
		n := push.Notification{
			ID:     s.room + ":" + fmt.Sprint(w.FirstSeq) + ":" + d.ID,
			UserID: s.user, DeviceID: d.ID,
			RoomID: s.room, RoomName: w.RoomName, RoomKind: w.RoomKind,
			Count: w.Count, Mentions: w.Mentions, FirstSeq: w.FirstSeq, LastSeq: w.LastSeq,
			SenderName: sender, Title: title, Body: body, SentAt: e.opts.Now().UTC(),
		}
		e.deliver(ctx, d, n)
	}
	return nil
}

// deliver sends one push at most once: the pushed-key is written before
// the push, so neither a second replica nor a retried flush repeats it.
// A device the provider reports gone is removed; a push that keeps
// failing is dead-lettered. Nothing here blocks the event stream.
func (e *Engine) deliver(ctx context.Context, d device.Device, n push.Notification) {
	log := e.Log.With("room_id", n.RoomID, "user_id", n.UserID, "device_id", d.ID, "platform", d.Platform)
	err := e.Store.Write(ctx, statestore.Op{
		Key: pushedKey(n.RoomID, n.FirstSeq, d.ID), Value: []byte(`1`), IfAbsent: true, TTL: e.opts.DedupeTTL,
	})
	if errors.Is(err, statestore.ErrConflict) {
		e.Metrics.pushes[pushDuplicate].Inc()
		log.InfoContext(ctx, "push already sent")
		return
	}
	if err != nil {
		e.Metrics.pushes[pushUnrecorded].Inc()
		log.ErrorContext(ctx, "record push; not sending", "err", err)
		return
	}
	pause := e.opts.Backoff
	for attempt := 1; ; attempt++ {
		err = e.Pusher.Send(ctx, d, n)
		switch {
		case err == nil:
			e.Metrics.pushes[pushSent].Inc()
			log.InfoContext(ctx, "pushed", "count", n.Count, "attempt", attempt)
			return
		case errors.Is(err, push.ErrGone):
			e.Metrics.pushes[pushGone].Inc()
			log.InfoContext(ctx, "device gone; removing it", "err", err)
			if err := e.Devices.Remove(ctx, n.UserID, d.ID); err != nil && !errors.Is(err, device.ErrNotFound) {
				log.ErrorContext(ctx, "remove gone device", "err", err)
			}
			return
		case !push.Retryable(err) || attempt >= e.opts.Attempts:
			e.Metrics.pushes[pushFailed].Inc()
			log.WarnContext(ctx, "push failed; dead-lettering it", "attempts", attempt, "err", err)
			if err := e.DeadLetters.DeadLetter(ctx, d, n, err); err != nil {
				log.ErrorContext(ctx, "dead-letter push", "err", err)
			}
			return
		}
		wait := pause
		var f *push.Failure
		if errors.As(err, &f) && f.RetryAfter > wait {
			wait = min(f.RetryAfter, e.opts.MaxBackoff)
		}
		pause = min(2*pause, e.opts.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
