package authn

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/platform/sidecar"
)

// ServiceOptions tune StartServiceVerifier. Zero values take the defaults.
type ServiceOptions struct {
	// AuthApp is the Dapr app id of the auth service, which publishes the
	// signing keys and maps external identities; default "auth".
	AuthApp string
	// OnRevoke, when not nil, is called for each revocation notice after
	// it is recorded (the ws service closes the session's sockets there).
	OnRevoke func(events.SessionRevoked)
}

func (o *ServiceOptions) defaults() {
	if o.AuthApp == "" {
		o.AuthApp = "auth"
	}
}

// NewServiceVerifier builds the Verifier a service puts in front of its
// API, from the settings every service reads: papo tokens are checked
// against the auth app's JWKS fetched through inv, tokens of the external
// issuers in AUTH_TRUSTED_ISSUERS against theirs, and sessions in its
// Revocations are refused. It starts nothing (StartRevocations fills the
// set); the only error is a malformed AUTH_TRUSTED_ISSUERS.
func NewServiceVerifier(s settings.Base, inv *invoke.Client, opts ServiceOptions) (*Verifier, error) {
	opts.defaults()
	trusted, err := ParseTrustedIssuers(s.TrustedIssuers)
	if err != nil {
		return nil, fmt.Errorf("AUTH_TRUSTED_ISSUERS: %w", err)
	}
	vopts := []Option{WithRevocations(NewRevocations())}
	if len(trusted) > 0 {
		vopts = append(vopts, WithTrustedIssuers(NewTrustedIssuers(trusted, nil, RemoteKeysOptions{}), NewRemoteIdentities(inv, opts.AuthApp)))
	}
	return NewVerifier(Config{Issuer: s.Issuer, Audience: s.Audience, Leeway: s.Leeway},
		NewRemoteKeys(inv, opts.AuthApp, RemoteKeysOptions{}), vopts...), nil
}

// StartRevocations fills r: once the sidecar answers ready it seeds r
// with the revocations auth remembers (through inv) and follows
// events.TopicSessions through sub (the service's Dapr client), calling
// opts.OnRevoke for each notice. It runs in a goroutine that stops when
// ctx is done or stop is called; stop also waits for it to return, so the
// caller can close sub afterwards. stop may be called more than once.
func StartRevocations(ctx context.Context, s settings.Base, inv *invoke.Client, sub Subscriber, r *Revocations, log *slog.Logger, opts ServiceOptions) (stop func()) {
	opts.defaults()
	// Subscribing before the sidecar is ready would only fail, log and
	// back off; the probe says when a subscription can succeed.
	probe := sidecar.NewProbe(s.DaprHTTPPort)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := probe.Wait(ctx); err != nil {
			return
		}
		seeded := make(chan struct{})
		go func() {
			defer close(seeded)
			seedRevocations(ctx, inv, opts.AuthApp, r, log)
		}()
		FollowRevocations(ctx, sub, r, log, opts.OnRevoke)
		<-seeded
	}()
	return func() { cancel(); <-done }
}

// StartServiceVerifier is NewServiceVerifier, then StartRevocations on
// the verifier's set: what a service that only verifies tokens needs.
func StartServiceVerifier(ctx context.Context, s settings.Base, inv *invoke.Client, sub Subscriber, log *slog.Logger, opts ServiceOptions) (v *Verifier, stop func(), err error) {
	v, err = NewServiceVerifier(s, inv, opts)
	if err != nil {
		return nil, nil, err
	}
	return v, StartRevocations(ctx, s, inv, sub, v.Revocations(), log, opts), nil
}

// seedRevocations asks auth for the revocations it remembers, retrying
// with backoff until it answers or ctx ends (auth may start after this
// service). Notices that arrive meanwhile are recorded by the follower.
func seedRevocations(ctx context.Context, inv Invoker, authApp string, r *Revocations, log *slog.Logger) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := SeedRevocations(ctx, inv, authApp, r)
		if err == nil {
			log.Debug("seeded session revocations", "count", n)
			return
		}
		if attempt == 5 {
			log.Warn("read recent session revocations; retrying", "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}
