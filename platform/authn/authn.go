// Package authn verifies papo access tokens. Every service uses it, the
// gateway at the edge and each service again behind it.
//
// A Verifier checks a JWT's signature against public keys from a
// KeySource (the auth service's JWKS, fetched through Dapr), its algorithm
// against an allow-list, and its iss, aud, exp, nbf and iat claims.
package authn

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
)

// Claims are the verified facts of an access token.
type Claims struct {
	UserID    string
	SessionID string
	TokenID   string
	Issuer    string
	ExpiresAt time.Time
}

// KeySource returns the public key for a key id.
type KeySource interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// ErrUnknownKey is returned by a KeySource that has no key with that id.
var ErrUnknownKey = errors.New("authn: unknown key id")

// Config names what a valid token must say.
type Config struct {
	Issuer   string
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat.
	Leeway time.Duration
}

// ValidMethods are the only signing algorithms accepted: asymmetric ones.
// "none", HMAC and anything else are refused.
var ValidMethods = []string{"EdDSA", "ES256"}

// TokenType is the JWT "typ" header of papo access tokens (RFC 9068).
const TokenType = "at+jwt"

type tokenClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
}

// Verifier verifies access tokens.
type Verifier struct {
	cfg      Config
	keys     KeySource
	revoked  *Revocations
	trusted  map[string]TrustedIssuer
	resolver IdentityResolver

	// verified remembers tokens whose signature and claims were checked,
	// so a client's every request does not cost a signature verification
	// (see Verify); signatures counts the verifications made.
	verified   *lru.Cache[string, verifiedToken]
	signatures atomic.Int64
}

// verifiedToken is what Verify keeps of a token it verified.
type verifiedToken struct {
	claims tokenClaims
	kid    string
	key    crypto.PublicKey
}

// VerifiedTokens is how many verified tokens a Verifier remembers.
const VerifiedTokens = 8192

// Option configures a Verifier.
type Option func(*Verifier)

// WithRevocations makes the Verifier refuse tokens of sessions in r, so a
// logout or a detected refresh-token reuse takes effect before the
// session's access tokens expire.
func WithRevocations(r *Revocations) Option {
	return func(v *Verifier) { v.revoked = r }
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg Config, keys KeySource, opts ...Option) *Verifier {
	verified, err := lru.New[string, verifiedToken](VerifiedTokens)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	v := &Verifier{cfg: cfg, keys: keys, verified: verified}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Verify checks a token and returns its claims. Every failure is an
// Unauthenticated *apierror.Error with code invalid_token (session_revoked
// for a revoked session), except that keys which cannot be fetched are an
// Unavailable error: an outage of the issuer must not look like a logout.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if err := CheckTokenSize(token); err != nil {
		return Claims{}, err
	}
	if ti, ok := v.trustedIssuerOf(token); ok {
		return v.verifyExternal(ctx, ti, token)
	}
	// A token verified before is taken as verified again while it has not
	// expired and its kid still names the key that verified it (a key
	// rotated out of the set stops its tokens here as it would below).
	// Whatever can turn a valid token invalid is checked on every call:
	// expiry, the key, and revocation.
	if vt, ok := v.verified.Get(token); ok {
		key, err := v.keys.Key(ctx, vt.kid)
		if err == nil && sameKey(key, vt.key) && time.Now().Before(vt.claims.ExpiresAt.Add(v.cfg.Leeway)) {
			return v.admit(vt.claims)
		}
		v.verified.Remove(token)
	}
	var tc tokenClaims
	var kid string
	var key crypto.PublicKey
	v.signatures.Add(1)
	parser := jwt.NewParser(
		jwt.WithValidMethods(ValidMethods),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
	)
	_, err := parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, TokenType) {
			return nil, fmt.Errorf("token type %q is not %s", typ, TokenType)
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		k, err := v.keys.Key(ctx, kid)
		key = k
		return k, err
	})
	if err != nil {
		return Claims{}, verifyError(err)
	}
	if tc.Subject == "" || tc.SessionID == "" {
		return Claims{}, apierror.New(apierror.Unauthenticated, "invalid_token", "access token lacks sub or sid")
	}
	v.verified.Add(token, verifiedToken{claims: tc, kid: kid, key: key})
	return v.admit(tc)
}

// Signatures reports how many token signatures were verified, for tests
// and metrics.
func (v *Verifier) Signatures() int64 { return v.signatures.Load() }

// sameKey reports whether two public keys are the same key.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// admit turns verified claims into Claims, refusing a revoked session.
func (v *Verifier) admit(tc tokenClaims) (Claims, error) {
	if v.revoked != nil && v.revoked.Revoked(tc.SessionID) {
		return Claims{}, ErrSessionRevoked()
	}
	c := Claims{UserID: tc.Subject, SessionID: tc.SessionID, TokenID: tc.ID, Issuer: tc.Issuer}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
	}
	return c, nil
}

// Revocations returns the set of revoked sessions the verifier refuses
// (nil when it has none).
func (v *Verifier) Revocations() *Revocations { return v.revoked }

// ErrSessionRevoked returns the error for a token of a revoked session.
func ErrSessionRevoked() *apierror.Error {
	return apierror.New(apierror.Unauthenticated, "session_revoked", "the session was revoked; log in again")
}

// verifyError turns a parse failure into the client-facing error.
func verifyError(err error) error {
	if e, ok := apierror.As(err); ok && e.Kind == apierror.Unavailable {
		return e
	}
	return apierror.New(apierror.Unauthenticated, "invalid_token", "access token is invalid: %v", err)
}

// CheckTokenSize refuses a token over api.MaxTokenBytes with 401
// invalid_token. It runs before anything parses the token: a crafted
// header of many dots or a huge segment must cost nothing
// (CVE-2025-30204 made golang-jwt's splitting quadratic on one).
func CheckTokenSize(token string) error {
	if len(token) > api.MaxTokenBytes {
		return apierror.New(apierror.Unauthenticated, "invalid_token", "access token is over %d bytes", api.MaxTokenBytes)
	}
	return nil
}

// BearerToken returns the token of an "Authorization: Bearer" header, or "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

type ctxKey int

const claimsKey ctxKey = 0

// WithClaims returns ctx carrying c.
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey, c)
}

// FromContext returns the claims a Middleware stored.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey).(Claims)
	return c, ok
}

// TokenVerifier is what Middleware needs; *Verifier implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (Claims, error)
}

// Middleware requires a valid bearer token and stores its claims in the
// request context; onError writes the 401.
func Middleware(v TokenVerifier, onError func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tok := BearerToken(r)
			if tok == "" {
				onError(w, r, apierror.New(apierror.Unauthenticated, "missing_token", "an Authorization: Bearer token is required"))
				return
			}
			c, err := v.Verify(r.Context(), tok)
			if err != nil {
				onError(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithClaims(r.Context(), c)))
		})
	}
}
