package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/invoke"
)

// TrustedIssuerConfig names an external OIDC issuer (Keycloak, …) whose
// access tokens papo accepts, as AUTH_TRUSTED_ISSUERS lists them.
type TrustedIssuerConfig struct {
	Issuer   string `json:"issuer"`
	JWKSURL  string `json:"jwks_url"`
	Audience string `json:"audience"`
}

// ParseTrustedIssuers decodes AUTH_TRUSTED_ISSUERS: a JSON list of
// {"issuer","jwks_url","audience"}. An empty string is an empty list.
func ParseTrustedIssuers(s string) ([]TrustedIssuerConfig, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var list []TrustedIssuerConfig
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, fmt.Errorf("trusted issuers: %w", err)
	}
	seen := map[string]bool{}
	for _, c := range list {
		if c.Issuer == "" || c.Audience == "" {
			return nil, fmt.Errorf("trusted issuer %q: issuer and audience are required", c.Issuer)
		}
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("trusted issuer %q: jwks_url %q is not an http(s) URL", c.Issuer, c.JWKSURL)
		}
		if seen[c.Issuer] {
			return nil, fmt.Errorf("trusted issuer %q is listed twice", c.Issuer)
		}
		seen[c.Issuer] = true
	}
	return list, nil
}

// TrustedIssuer is an external issuer with the keys that verify its tokens.
type TrustedIssuer struct {
	Issuer   string
	Audience string
	Keys     KeySource
	// Methods are the algorithms accepted from it; default
	// ExternalMethods.
	Methods []string
}

// ExternalMethods are the algorithms accepted from external issuers:
// asymmetric ones only (OIDC providers sign with RS256 by default).
var ExternalMethods = []string{"RS256", "PS256", "ES256", "EdDSA"}

// NewTrustedIssuers builds TrustedIssuers whose keys are fetched from
// each jwks_url with hc (nil for a default client).
func NewTrustedIssuers(cfgs []TrustedIssuerConfig, hc *http.Client, opts RemoteKeysOptions) []TrustedIssuer {
	out := make([]TrustedIssuer, len(cfgs))
	for i, c := range cfgs {
		out[i] = TrustedIssuer{Issuer: c.Issuer, Audience: c.Audience, Keys: NewHTTPKeys(hc, c.JWKSURL, opts)}
	}
	return out
}

// ExternalIdentity is who an external token says its bearer is.
type ExternalIdentity struct {
	Issuer      string `json:"issuer"`
	Subject     string `json:"subject"`
	Username    string `json:"username,omitempty"`     // preferred_username, a hint
	DisplayName string `json:"display_name,omitempty"` // name, a hint
}

// IdentityResolver maps an external identity to a papo user, creating the
// user on first use.
type IdentityResolver interface {
	ResolveIdentity(ctx context.Context, id ExternalIdentity) (api.User, error)
}

// WithTrustedIssuers makes the Verifier accept tokens of the given
// external issuers, mapped to local users by r.
func WithTrustedIssuers(issuers []TrustedIssuer, r IdentityResolver) Option {
	return func(v *Verifier) {
		v.trusted = make(map[string]TrustedIssuer, len(issuers))
		for _, ti := range issuers {
			if len(ti.Methods) == 0 {
				ti.Methods = ExternalMethods
			}
			v.trusted[ti.Issuer] = ti
		}
		v.resolver = r
	}
}

// ExternalSessionPrefix starts the session id of a token from an external
// issuer. Such sessions belong to the issuer: papo cannot revoke them, and
// a session check passes them (the token's signature and exp decide).
const ExternalSessionPrefix = "ext."

// IsExternalSession reports whether sid names an external issuer's session.
func IsExternalSession(sid string) bool { return strings.HasPrefix(sid, ExternalSessionPrefix) }

type externalClaims struct {
	jwt.RegisteredClaims
	SessionID         string `json:"sid"`
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name"`
}

// trustedIssuerOf returns the trusted external issuer the token claims to
// come from. Reading iss before the signature is checked only picks which
// keys and rules apply; the token is then verified against them.
func (v *Verifier) trustedIssuerOf(token string) (TrustedIssuer, bool) {
	if len(v.trusted) == 0 {
		return TrustedIssuer{}, false
	}
	var rc jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &rc); err != nil {
		return TrustedIssuer{}, false
	}
	if rc.Issuer == v.cfg.Issuer {
		return TrustedIssuer{}, false
	}
	ti, ok := v.trusted[rc.Issuer]
	return ti, ok
}

func (v *Verifier) verifyExternal(ctx context.Context, ti TrustedIssuer, token string) (Claims, error) {
	var ec externalClaims
	parser := jwt.NewParser(
		jwt.WithValidMethods(ti.Methods),
		jwt.WithIssuer(ti.Issuer),
		jwt.WithAudience(ti.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
	)
	_, err := parser.ParseWithClaims(token, &ec, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		return ti.Keys.Key(ctx, kid)
	})
	if err != nil {
		return Claims{}, verifyError(err)
	}
	if ec.Subject == "" {
		return Claims{}, apierror.New(apierror.Unauthenticated, "invalid_token", "access token lacks sub")
	}
	if v.resolver == nil {
		return Claims{}, errors.New("authn: external issuer configured without an identity resolver")
	}
	user, err := v.resolver.ResolveIdentity(ctx, ExternalIdentity{
		Issuer: ec.Issuer, Subject: ec.Subject, Username: ec.PreferredUsername, DisplayName: ec.Name,
	})
	if err != nil {
		return Claims{}, fmt.Errorf("resolve external identity: %w", err)
	}
	// One stable local session id per external session (or subject, for
	// issuers without sid), so per-session state keys stay consistent.
	basis := ec.SessionID
	if basis == "" {
		basis = "sub:" + ec.Subject
	}
	sum := sha256.Sum256([]byte(ec.Issuer + "\x00" + basis))
	sid := ExternalSessionPrefix + hex.EncodeToString(sum[:16])
	if v.revoked != nil && v.revoked.Revoked(sid) {
		return Claims{}, ErrSessionRevoked()
	}
	c := Claims{UserID: user.ID, SessionID: sid, TokenID: ec.ID, Issuer: ec.Issuer}
	if ec.ExpiresAt != nil {
		c.ExpiresAt = ec.ExpiresAt.Time
	}
	return c, nil
}

// IdentitiesPath is auth's internal route that resolves external identities.
const IdentitiesPath = "/internal/v1/identities"

// RemoteIdentities resolves external identities with the auth service
// through Dapr invocation, remembering answers (the mapping never
// changes once made).
type RemoteIdentities struct {
	inv   *invoke.Client
	appID string

	mu    sync.Mutex
	cache map[ExternalIdentity]api.User
}

// NewRemoteIdentities returns a resolver that asks the app appID.
func NewRemoteIdentities(inv *invoke.Client, appID string) *RemoteIdentities {
	return &RemoteIdentities{inv: inv, appID: appID, cache: map[ExternalIdentity]api.User{}}
}

// ResolveIdentity implements IdentityResolver.
func (r *RemoteIdentities) ResolveIdentity(ctx context.Context, id ExternalIdentity) (api.User, error) {
	key := ExternalIdentity{Issuer: id.Issuer, Subject: id.Subject}
	r.mu.Lock()
	u, ok := r.cache[key]
	r.mu.Unlock()
	if ok {
		return u, nil
	}
	var resp api.UserResponse
	if err := r.inv.Do(ctx, r.appID, http.MethodPost, IdentitiesPath, nil, id, &resp); err != nil {
		return api.User{}, err
	}
	r.mu.Lock()
	if len(r.cache) >= 100_000 {
		clear(r.cache) // bound memory; entries are cheap to fetch again
	}
	r.cache[key] = resp.User
	r.mu.Unlock()
	return resp.User, nil
}

// SessionsPath is auth's internal route that says whether a session is live.
const SessionsPath = "/internal/v1/sessions/"

// SessionStatus is the answer of GET /internal/v1/sessions/{sid}.
type SessionStatus struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	Active    bool   `json:"active"`
}

// RemoteSessions checks sessions with the auth service synchronously, for
// moments that must not trust a possibly late revocation notice (the
// WebSocket handshake).
type RemoteSessions struct {
	inv   *invoke.Client
	appID string
}

// NewRemoteSessions returns a checker that asks the app appID.
func NewRemoteSessions(inv *invoke.Client, appID string) *RemoteSessions {
	return &RemoteSessions{inv: inv, appID: appID}
}

// Check returns nil when the session is live, an Unauthenticated error
// (code session_revoked) when it was revoked or never existed, and the
// transport error when auth cannot be asked.
func (s *RemoteSessions) Check(ctx context.Context, sessionID string) error {
	if IsExternalSession(sessionID) {
		return nil
	}
	if sessionID == "" {
		return ErrSessionRevoked()
	}
	var st SessionStatus
	err := s.inv.Do(ctx, s.appID, http.MethodGet, SessionsPath+url.PathEscape(sessionID), nil, nil, &st)
	if err != nil {
		if apierror.KindOf(err) == apierror.NotFound {
			return ErrSessionRevoked()
		}
		return err
	}
	if !st.Active {
		return ErrSessionRevoked()
	}
	return nil
}
