// Package authntest mints real signed access tokens for tests of services
// that verify them, without an auth service.
package authntest

import (
	"crypto/ed25519"
	"crypto/rand"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/papochat/papo/platform/authn"
)

// Issuer signs tokens with a fresh Ed25519 key.
type Issuer struct {
	Config authn.Config
	KID    string
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
}

// New returns an Issuer for issuer "papo-test" and audience "papo".
func New() *Issuer {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return &Issuer{
		Config: authn.Config{Issuer: "papo-test", Audience: "papo", Leeway: 5 * time.Second},
		KID:    "test-key",
		priv:   priv,
		pub:    pub,
	}
}

// Verifier returns a Verifier that accepts this Issuer's tokens.
func (i *Issuer) Verifier() *authn.Verifier {
	return authn.NewVerifier(i.Config, authn.StaticKeys{i.KID: i.pub})
}

// Token returns an access token for userID in session sessionID, valid for ttl.
func (i *Issuer) Token(userID, sessionID string, ttl time.Duration) string {
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": i.Config.Issuer,
		"aud": i.Config.Audience,
		"sub": userID,
		"sid": sessionID,
		"jti": sessionID + "-" + now.Format(time.RFC3339Nano),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	})
	tok.Header["kid"] = i.KID
	tok.Header["typ"] = authn.TokenType
	s, err := tok.SignedString(i.priv)
	if err != nil {
		panic(err)
	}
	return s
}

// JWKS returns the JWK Set that publishes this Issuer's public key, as the
// auth service's /api/v1/auth/jwks would.
func (i *Issuer) JWKS() authn.JWKSet {
	k, err := authn.PublicJWK(i.KID, i.pub)
	if err != nil {
		panic(err) // an Ed25519 key always converts
	}
	return authn.JWKSet{Keys: []authn.JWK{k}}
}
