package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"

	"github.com/papochat/papo/services/auth/internal/account"
	"github.com/papochat/papo/services/auth/internal/session"
	"github.com/papochat/papo/services/auth/internal/signing"
	"github.com/papochat/papo/services/auth/internal/throttle"
)

// maxBody bounds every auth request body: the largest legitimate one is a
// registration with a 256-byte password.
const maxBody = 8 << 10

func handleRegister(accounts *account.Accounts) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req api.RegisterRequest
		if err := httpapi.Decode(w, r, maxBody, &req); err != nil {
			return err
		}
		u, err := accounts.Register(r.Context(), req.Username, req.Password, req.DisplayName)
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusCreated, api.UserResponse{User: u})
		return nil
	}
}

// loginThrottles slow down password guessing without letting anyone lock
// a user out (throttle.Logins; the rule is in docs/auth.md).
type loginThrottles struct {
	logins *throttle.Logins
	hops   int
	log    *slog.Logger
}

func (t loginThrottles) check(ctx context.Context, user, ip string) error {
	if wait := t.logins.Check(ctx, user, ip); wait > 0 {
		e := apierror.New(apierror.RateLimited, "too_many_attempts", "too many failed logins; retry after the time in Retry-After")
		e.RetryAfter = wait
		return e
	}
	return nil
}

func handleLogin(accounts *account.Accounts, sessions *session.Manager, issuer *signing.Issuer, limits loginThrottles) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req api.LoginRequest
		if err := httpapi.Decode(w, r, maxBody, &req); err != nil {
			return err
		}
		if err := issuer.Ring.Ready(r.Context()); err != nil {
			// Say so before any password work or session is made.
			return apierror.New(apierror.Unavailable, "keys_unavailable", "signing keys are not loaded yet; retry shortly")
		}
		userKey := req.Username
		if len(userKey) > 64 {
			userKey = userKey[:64] // bounds the throttle's keys; no valid username is longer
		}
		ip := clientAddr(r, limits.hops)
		if err := limits.check(r.Context(), userKey, ip); err != nil {
			return err
		}
		u, err := accounts.Authenticate(r.Context(), req.Username, req.Password)
		if apierror.CodeOf(err) == "invalid_credentials" {
			limits.logins.Failed(userKey, ip)
		}
		if err != nil {
			return err
		}
		if err := limits.logins.Succeeded(r.Context(), userKey, ip); err != nil {
			// Only a later slow-down at this address depends on it.
			limits.log.WarnContext(r.Context(), "login address not remembered", "user_id", u.ID, "err", err)
		}
		s, refresh, err := sessions.Create(r.Context(), u.ID)
		if err != nil {
			return err
		}
		return writeTokens(w, issuer, u, s.ID, refresh)
	}
}

func handleRefresh(accounts *account.Accounts, sessions *session.Manager, issuer *signing.Issuer) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req api.RefreshRequest
		if err := httpapi.Decode(w, r, maxBody, &req); err != nil {
			return err
		}
		if req.RefreshToken == "" {
			return apierror.Invalidf("missing_refresh_token", "refresh_token is required")
		}
		if len(req.RefreshToken) > api.MaxTokenBytes {
			// Refused before any hashing or lookup, like an access token
			// over the cap (platform/authn.CheckTokenSize).
			return apierror.New(apierror.Unauthenticated, "invalid_refresh_token", "refresh_token is over %d bytes", api.MaxTokenBytes)
		}
		s, refresh, err := sessions.Refresh(r.Context(), req.RefreshToken)
		if err != nil {
			return err
		}
		u, err := accounts.Get(r.Context(), s.UserID)
		if err != nil {
			return err
		}
		return writeTokens(w, issuer, u, s.ID, refresh)
	}
}

func writeTokens(w http.ResponseWriter, issuer *signing.Issuer, u api.User, sessionID, refresh string) error {
	access, _, err := issuer.Issue(u.ID, sessionID)
	if err != nil {
		return err
	}
	// Tokens must not be cached by anything between us and the client.
	w.Header().Set("Cache-Control", "no-store")
	httpapi.Encode(w, http.StatusOK, api.TokenResponse{
		AccessToken:  access,
		RefreshToken: refresh,
		TokenType:    "Bearer",
		ExpiresIn:    int64(issuer.TTL / time.Second),
		User:         u,
	})
	return nil
}

func handleLogout(sessions *session.Manager) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, _ := authn.FromContext(r.Context())
		if authn.IsExternalSession(c.SessionID) {
			// The external issuer owns that session; log out there.
			return apierror.Invalidf("external_session", "this session belongs to %s; log out there", c.Issuer)
		}
		if err := sessions.Revoke(r.Context(), c.SessionID, session.ReasonLogout); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func handleJWKS(keys *signing.Keyring) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Verifiers refetch on an unknown kid, so a short cache is safe.
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Content-Type", "application/jwk-set+json")
		httpapi.Encode(w, http.StatusOK, keys.JWKS())
	})
}

func handleMe(accounts *account.Accounts) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, _ := authn.FromContext(r.Context())
		u, err := accounts.Get(r.Context(), c.UserID)
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, api.UserResponse{User: u})
		return nil
	}
}

// UsersResponse answers GET /api/v1/users.
type UsersResponse struct {
	Users []api.User `json:"users"`
}

func handleFindUsers(accounts *account.Accounts) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := r.URL.Query().Get("username")
		if name == "" {
			return apierror.Invalidf("missing_username", "the username query parameter is required (exact match)")
		}
		users, err := accounts.ByUsername(r.Context(), name)
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, UsersResponse{Users: users})
		return nil
	}
}

func handleGetUser(accounts *account.Accounts) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		u, err := accounts.Get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, api.UserResponse{User: u})
		return nil
	}
}

// handleSessionStatus answers whether a session is live: 200 with
// active:true, or 404 (session_revoked or not_found).
func handleSessionStatus(sessions *session.Manager) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		sid := chi.URLParam(r, "sid")
		if authn.IsExternalSession(sid) {
			httpapi.Encode(w, http.StatusOK, authn.SessionStatus{SessionID: sid, Active: true})
			return nil
		}
		s, err := sessions.Live(r.Context(), sid)
		if apierror.CodeOf(err) == "session_revoked" {
			return apierror.New(apierror.NotFound, "session_revoked", "the session was revoked")
		}
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, authn.SessionStatus{SessionID: s.ID, UserID: s.UserID, Active: true})
		return nil
	}
}

// handleRecentRevocations lists the revocations whose access tokens may
// still be alive.
func handleRecentRevocations(sessions *session.Manager) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		recent, err := sessions.Recent(r.Context())
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, authn.RecentRevocations{Revocations: recent})
		return nil
	}
}

// handleResolveIdentity maps an external identity to a local user,
// creating it on first use. Only identities of configured issuers are
// accepted: the caller has verified the token, auth checks the issuer is
// one it trusts too.
func handleResolveIdentity(accounts *account.Accounts, trusted map[string]bool) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var id authn.ExternalIdentity
		if err := httpapi.Decode(w, r, maxBody, &id); err != nil {
			return err
		}
		if !trusted[id.Issuer] {
			return apierror.New(apierror.Forbidden, "untrusted_issuer", "issuer %q is not trusted", id.Issuer)
		}
		u, err := accounts.ResolveIdentity(r.Context(), id)
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, api.UserResponse{User: u})
		return nil
	}
}

// liveSessionVerifier verifies a token, then checks its session in the
// store, so a revoked session is refused by auth at once.
type liveSessionVerifier struct {
	verifier *authn.Verifier
	sessions *session.Manager
}

func (v liveSessionVerifier) Verify(ctx context.Context, token string) (authn.Claims, error) {
	c, err := v.verifier.Verify(ctx, token)
	if err != nil || authn.IsExternalSession(c.SessionID) {
		return c, err
	}
	if _, err := v.sessions.Live(ctx, c.SessionID); err != nil {
		if k := apierror.KindOf(err); k == apierror.NotFound || k == apierror.Unauthenticated {
			return authn.Claims{}, authn.ErrSessionRevoked()
		}
		return authn.Claims{}, err
	}
	return c, nil
}

// clientAddr is the address the login came from: the entry hops from the
// right of X-Forwarded-For (each trusted proxy appends the address it
// saw), else the connection's peer.
func clientAddr(r *http.Request, hops int) string {
	var chain []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, part := range strings.Split(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				chain = append(chain, p)
			}
		}
	}
	if hops > 0 && len(chain) > 0 {
		i := max(len(chain)-hops, 0)
		if ip := net.ParseIP(chain[i]); ip != nil {
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
