package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/sidecar"
)

// Revocations is the set of revoked session ids a replica knows of, each
// kept until its last access token has expired (then it no longer
// matters and is pruned). A Verifier given one refuses tokens of those
// sessions before they expire.
type Revocations struct {
	mu        sync.Mutex
	until     map[string]time.Time
	now       func() time.Time
	lastPrune time.Time
}

// NewRevocations returns an empty set on the system clock.
func NewRevocations() *Revocations { return NewRevocationsAt(time.Now) }

// NewRevocationsAt returns an empty set on the clock now, for tests.
func NewRevocationsAt(now func() time.Time) *Revocations {
	return &Revocations{until: map[string]time.Time{}, now: now}
}

// Revoke records that sessionID is revoked until until.
func (r *Revocations) Revoke(sessionID string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastPrune) >= time.Minute {
		for sid, u := range r.until {
			if !now.Before(u) {
				delete(r.until, sid)
			}
		}
		r.lastPrune = now
	}
	if !now.Before(until) {
		return
	}
	if u, ok := r.until[sessionID]; !ok || until.After(u) {
		r.until[sessionID] = until
	}
}

// Revoked reports whether sessionID is revoked.
func (r *Revocations) Revoked(sessionID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.until[sessionID]
	return ok && r.now().Before(u)
}

// Len returns the number of entries, expired ones not yet pruned included.
func (r *Revocations) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.until)
}

// Apply decodes one events.SessionRevoked payload and records it.
func (r *Revocations) Apply(data []byte) (events.SessionRevoked, error) {
	var ev events.SessionRevoked
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("decode %s event: %w", events.TopicSessions, err)
	}
	if ev.SessionID == "" || ev.Until.IsZero() {
		return ev, fmt.Errorf("%s event lacks session_id or until", events.TopicSessions)
	}
	r.Revoke(ev.SessionID, ev.Until)
	return ev, nil
}

// Subscriber opens a streaming subscription; dapr.Client implements it.
type Subscriber interface {
	Subscribe(ctx context.Context, opts dapr.SubscriptionOptions) (*dapr.Subscription, error)
}

// FollowRevocations feeds r from a streaming subscription to
// events.TopicSessions on the events.Fanout component (every replica gets
// every notice) until ctx is done, resubscribing with backoff when the
// stream breaks. onRevoke, when not nil, is called for each notice after
// it is recorded (the ws service closes the session's sockets there).
//
// Dapr allows one streaming subscription per component and topic per
// sidecar, so a service runs one FollowRevocations and fans out from
// onRevoke.
func FollowRevocations(ctx context.Context, sub Subscriber, r *Revocations, log *slog.Logger, onRevoke func(events.SessionRevoked)) error {
	backoff := 100 * time.Millisecond
	for failures := 1; ; failures++ {
		began := time.Now()
		err := followOnce(ctx, sub, r, log, onRevoke)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > 5*time.Second {
			failures = sidecar.Persistent // an established stream broke
		}
		// A sidecar that has just started refuses streams for a moment;
		// only a failure that persists is worth a warning.
		log.Log(ctx, sidecar.RetryLevel(failures), "session revocation stream broke; resubscribing", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func followOnce(ctx context.Context, sub Subscriber, r *Revocations, log *slog.Logger, onRevoke func(events.SessionRevoked)) error {
	s, err := sub.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: events.Fanout, Topic: events.TopicSessions})
	if err != nil {
		return fmt.Errorf("subscribe %s/%s: %w", events.Fanout, events.TopicSessions, err)
	}
	// Receive does not watch ctx; closing the stream unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer func() {
		if stop() {
			_ = s.Close()
		}
	}()
	for {
		msg, err := s.Receive()
		if err != nil {
			return err
		}
		ev, err := r.Apply(msg.RawData)
		if err != nil {
			// A malformed notice will never parse: drop it, do not retry.
			log.Error("dropping malformed session revocation", "err", err)
			if err := msg.Drop(); err != nil {
				return err
			}
			continue
		}
		if onRevoke != nil {
			onRevoke(ev)
		}
		if err := msg.Success(); err != nil {
			return errors.Join(errors.New("ack session revocation"), err)
		}
	}
}

// RevocationsPath is auth's internal route listing the revocations whose
// access tokens may still be alive.
const RevocationsPath = "/internal/v1/revocations"

// RecentRevocations is the answer of RevocationsPath.
type RecentRevocations struct {
	Revocations []events.SessionRevoked `json:"revocations"`
}

// Invoker calls a method on another app-id; *invoke.Client implements it.
type Invoker interface {
	Do(ctx context.Context, appID, method, path string, header http.Header, in, out any) error
}

// SeedRevocations records in r the revocations auth remembers: a service
// that starts learns of sessions revoked before it subscribed to
// events.TopicSessions. It returns how many it recorded.
func SeedRevocations(ctx context.Context, inv Invoker, authApp string, r *Revocations) (int, error) {
	var ans RecentRevocations
	if err := inv.Do(ctx, authApp, http.MethodGet, RevocationsPath, nil, nil, &ans); err != nil {
		return 0, err
	}
	for _, ev := range ans.Revocations {
		r.Revoke(ev.SessionID, ev.Until)
	}
	return len(ans.Revocations), nil
}
