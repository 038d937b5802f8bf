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

// StartServiceVerifier builds the Verifier a service puts in front of its
// API, from the settings every service reads: papo tokens are checked
// against the auth app's JWKS fetched through inv, tokens of the external
// issuers in AUTH_TRUSTED_ISSUERS against theirs, and sessions revoked on
// events.TopicSessions are refused at once.
//
// It starts following revocations through sub (the service's Dapr client)
// once the sidecar answers ready, in a goroutine that stops when ctx is
// done or stop is called; stop also waits for it to return, so the
// caller can close sub afterwards. stop may be called more than once. The
// only error is a malformed AUTH_TRUSTED_ISSUERS, and nothing is started
// then.
func StartServiceVerifier(ctx context.Context, s settings.Base, inv *invoke.Client, sub Subscriber, log *slog.Logger, opts ServiceOptions) (v *Verifier, revoked *Revocations, stop func(), err error) {
	if opts.AuthApp == "" {
		opts.AuthApp = "auth"
	}
	trusted, err := ParseTrustedIssuers(s.TrustedIssuers)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("AUTH_TRUSTED_ISSUERS: %w", err)
	}
	revoked = NewRevocations()
	vopts := []Option{WithRevocations(revoked)}
	if len(trusted) > 0 {
		vopts = append(vopts, WithTrustedIssuers(NewTrustedIssuers(trusted, nil, RemoteKeysOptions{}), NewRemoteIdentities(inv, opts.AuthApp)))
	}
	v = NewVerifier(Config{Issuer: s.Issuer, Audience: s.Audience, Leeway: s.Leeway},
		NewRemoteKeys(inv, opts.AuthApp, RemoteKeysOptions{}), vopts...)

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
			seedRevocations(ctx, inv, opts.AuthApp, revoked, log)
		}()
		if err := FollowRevocations(ctx, sub, revoked, log, opts.OnRevoke); err != nil && ctx.Err() == nil {
			log.Error("follow session revocations", "err", err)
		}
		<-seeded
	}()
	return v, revoked, func() { cancel(); <-done }, nil
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
