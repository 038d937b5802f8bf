package authn

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/pubsub"
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

// Apply decodes one events.SessionRevoked payload and records it. A
// payload that does not decode, or a notice without a session or an
// expiry, is malformed (pubsub.Malformed): it will never apply, so a
// subscription drops it rather than have it redelivered.
func (r *Revocations) Apply(data []byte) (events.SessionRevoked, error) {
	ev, err := pubsub.Decode[events.SessionRevoked](data)
	if err != nil {
		return ev, err
	}
	if ev.SessionID == "" || ev.Until.IsZero() {
		return ev, pubsub.Malformed(fmt.Errorf("%s event lacks session_id or until", events.TopicSessions))
	}
	r.Revoke(ev.SessionID, ev.Until)
	return ev, nil
}

// Subscriber opens a streaming subscription; dapr.Client implements it.
type Subscriber = pubsub.Streamer

// FollowRevocations feeds r from a streaming subscription to
// events.TopicSessions on the events.Fanout component (every replica gets
// every notice) until ctx is done, resubscribing with backoff when the
// stream breaks (pubsub.Stream). onRevoke, when not nil, is called for
// each notice after it is recorded (the ws service closes the session's
// sockets there).
//
// Dapr allows one streaming subscription per component and topic per
// sidecar, so a service runs one FollowRevocations and fans out from
// onRevoke.
func FollowRevocations(ctx context.Context, sub Subscriber, r *Revocations, log *slog.Logger, onRevoke func(events.SessionRevoked)) {
	s := &pubsub.Stream{Client: sub, PubSub: events.Fanout, Topic: events.TopicSessions, Log: log}
	s.Run(ctx, func(_ context.Context, data []byte) error {
		ev, err := r.Apply(data)
		if err == nil && onRevoke != nil {
			onRevoke(ev)
		}
		return err
	})
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
