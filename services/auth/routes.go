package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"

	"github.com/papochat/papo/services/auth/internal/account"
	"github.com/papochat/papo/services/auth/internal/keys"
	"github.com/papochat/papo/services/auth/internal/session"
	"github.com/papochat/papo/services/auth/internal/signing"
	"github.com/papochat/papo/services/auth/internal/throttle"
)

// Deps are everything the auth handlers need.
type Deps struct {
	Log      *slog.Logger
	Config   Config
	Accounts *account.Accounts
	Sessions *session.Manager
	Keys     *signing.Keyring
	// Directory holds the users' end-to-end encryption keys.
	Directory *keys.Directory
	// Ready are the checks /readyz runs.
	Ready map[string]httpapi.Check
	// KnownAddresses remembers where each username logged in from (the
	// login throttle spares those addresses its username-wide slow-down).
	KnownAddresses throttle.Known
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Metrics, when set, count logins, refreshes and registrations.
	Metrics *Metrics
}

// Limits tune the login throttles (read from the environment with Config;
// docs/auth.md, "Abuse limits", explains them).
type Limits struct {
	// PairFreeFailures are the free failures of one username at one
	// client address; IPFreeFailures of one address, any username. Past
	// them each failure blocks the pair (or address) twice as long, from
	// BackoffBase up to BackoffMax.
	PairFreeFailures int           `envconfig:"AUTH_LOGIN_FREE_FAILURES_PAIR" default:"5"`
	IPFreeFailures   int           `envconfig:"AUTH_LOGIN_FREE_FAILURES_IP" default:"20"`
	BackoffBase      time.Duration `envconfig:"AUTH_LOGIN_BACKOFF_BASE" default:"1s"`
	BackoffMax       time.Duration `envconfig:"AUTH_LOGIN_BACKOFF_MAX" default:"15m"`
	// UserFreeFailures are the free failures of one username from all
	// addresses together; past them logins of that username from an
	// address it has not logged in from (within KnownFor) wait from
	// BackoffBase up to UserBackoffMax: a slow-down, never a lock-out.
	UserFreeFailures int           `envconfig:"AUTH_LOGIN_FREE_FAILURES_USER" default:"100"`
	UserBackoffMax   time.Duration `envconfig:"AUTH_LOGIN_USER_BACKOFF_MAX" default:"1m"`
	KnownFor         time.Duration `envconfig:"AUTH_LOGIN_KNOWN_FOR" default:"720h"`
}

// NewServer returns the auth service's handler. This file lists its whole
// API: public routes (reached through the gateway) and internal ones
// (reached by other services through Dapr, never routed by the gateway).
func NewServer(d Deps) http.Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	cfg := d.Config
	issuer := &signing.Issuer{Ring: d.Keys, Issuer: cfg.Issuer, Audience: cfg.Audience, TTL: cfg.AccessTTL, Now: d.Now}
	verifier := authn.NewVerifier(
		authn.Config{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway},
		d.Keys,
		authn.WithTrustedIssuers(authn.NewTrustedIssuers(cfg.Trusted, nil, authn.RemoteKeysOptions{}), d.Accounts),
	)
	// Auth owns the sessions, so it checks each token's session in its
	// store instead of waiting for the revocation notice.
	tokens := liveSessionVerifier{verifier: verifier, sessions: d.Sessions}
	writeErr := func(w http.ResponseWriter, r *http.Request, err error) { httpapi.Error(w, r, d.Log, err) }
	requireToken := authn.Middleware(tokens, writeErr)
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(d.Log, f) }
	forget := 30 * time.Minute
	lim := cfg.Limits
	throttles := loginThrottles{
		logins: throttle.NewLogins(throttle.LoginPolicy{
			Pair:    throttle.Policy{Free: lim.PairFreeFailures, Base: lim.BackoffBase, Max: lim.BackoffMax, Forget: forget},
			Address: throttle.Policy{Free: lim.IPFreeFailures, Base: lim.BackoffBase, Max: lim.BackoffMax, Forget: forget},
			User:    throttle.Policy{Free: lim.UserFreeFailures, Base: lim.BackoffBase, Max: lim.UserBackoffMax, Forget: forget},
		}, d.KnownAddresses, d.Now),
		hops: cfg.ForwardedHops,
		log:  d.Log,
	}
	trusted := map[string]bool{}
	for _, ti := range cfg.Trusted {
		trusted[ti.Issuer] = true
	}

	r := chi.NewRouter()
	r.Use(httpapi.RequestIDs, httpapi.AccessLog(d.Log), httpapi.Recover(d.Log))
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", httpapi.Readyz(d.Ready))

	r.Route("/api/v1", func(r chi.Router) {
		m := d.Metrics
		if m == nil {
			m = &Metrics{}
		}
		r.Method(http.MethodPost, "/auth/register", h(counted(m.registrations, handleRegister(d.Accounts))))
		r.Method(http.MethodPost, "/auth/login", h(counted(m.logins, handleLogin(d.Accounts, d.Sessions, issuer, throttles))))
		r.Method(http.MethodPost, "/auth/refresh", h(counted(m.refreshes, handleRefresh(d.Accounts, d.Sessions, issuer))))
		r.Method(http.MethodGet, "/auth/jwks", handleJWKS(d.Keys))
		r.Group(func(r chi.Router) {
			r.Use(requireToken)
			r.Method(http.MethodPost, "/auth/logout", h(handleLogout(d.Sessions)))
			r.Method(http.MethodGet, "/me", h(handleMe(d.Accounts)))
			r.Method(http.MethodGet, "/users", h(handleFindUsers(d.Accounts)))
			r.Method(http.MethodGet, "/users/{id}", h(handleGetUser(d.Accounts)))
			r.Method(http.MethodGet, "/users/{id}/keys", h(handleGetKeys(d.Accounts, d.Directory)))
			r.Method(http.MethodPut, "/users/{id}/keys/devices/{device}", h(handlePutDeviceKey(d.Directory)))
			r.Method(http.MethodDelete, "/users/{id}/keys/devices/{device}", h(handleDeleteDeviceKey(d.Directory)))
		})
	})
	r.Route("/internal/v1", func(r chi.Router) {
		r.Method(http.MethodGet, "/sessions/{sid}", h(handleSessionStatus(d.Sessions)))
		// The revocations whose tokens may still be alive, for services
		// that start after they were announced.
		r.Method(http.MethodGet, "/revocations", h(handleRecentRevocations(d.Sessions)))
		// A user by id for services acting on no user's behalf (the
		// notification service resolves @mentions).
		r.Method(http.MethodGet, "/users/{id}", h(handleGetUser(d.Accounts)))
		r.Method(http.MethodPost, "/identities", h(handleResolveIdentity(d.Accounts, trusted)))
	})
	r.NotFound(httpapi.NotFound)
	r.MethodNotAllowed(httpapi.MethodNotAllowed)
	return r
}
