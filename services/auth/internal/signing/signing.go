// Package signing holds auth's access-token signing keys and mints access
// tokens: EdDSA (Ed25519) JWTs with a kid and typ at+jwt (RFC 9068).
//
// Keys come from a Dapr secret store (see Source). A Keyring holds every
// key the secret lists: the newest signs, and all of them are published in
// the JWKS, so tokens signed by a previous key verify until they expire.
package signing

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
)

// Key is one Ed25519 signing key.
type Key struct {
	ID        string
	CreatedAt time.Time
	Private   ed25519.PrivateKey
}

// Public returns the key's public half.
func (k Key) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// GenerateKey returns a new key created at now, with a kid that sorts by
// date and cannot collide.
func GenerateKey(now time.Time) (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, err
	}
	return Key{ID: now.UTC().Format("20060102") + "-" + hex.EncodeToString(id[:]), CreatedAt: now.UTC(), Private: priv}, nil
}

// storedKeys is the JSON document the signing secret holds.
type storedKeys struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	Kid       string    `json:"kid"`
	CreatedAt time.Time `json:"created_at"`
	// Seed is the base64 (standard) of the 32-byte Ed25519 seed.
	Seed string `json:"ed25519_seed"`
}

// Encode returns the secret document that holds keys.
func Encode(keys []Key) ([]byte, error) {
	doc := storedKeys{Keys: make([]storedKey, len(keys))}
	for i, k := range keys {
		doc.Keys[i] = storedKey{Kid: k.ID, CreatedAt: k.CreatedAt, Seed: base64.StdEncoding.EncodeToString(k.Private.Seed())}
	}
	return json.Marshal(doc)
}

// Decode parses a secret document into keys.
func Decode(b []byte) ([]Key, error) {
	var doc storedKeys
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode signing keys: %w", err)
	}
	keys := make([]Key, 0, len(doc.Keys))
	seen := map[string]bool{}
	for _, sk := range doc.Keys {
		seed, err := base64.StdEncoding.DecodeString(sk.Seed)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key %q: seed is not %d bytes of base64", sk.Kid, ed25519.SeedSize)
		}
		if sk.Kid == "" || seen[sk.Kid] {
			return nil, fmt.Errorf("signing key %q: kid is empty or repeated", sk.Kid)
		}
		seen[sk.Kid] = true
		keys = append(keys, Key{ID: sk.Kid, CreatedAt: sk.CreatedAt, Private: ed25519.NewKeyFromSeed(seed)})
	}
	return keys, nil
}

// Keyring is the current set of signing keys. It is a KeySource for
// authn, so the auth service verifies its own tokens without a network
// hop.
type Keyring struct {
	mu   sync.RWMutex
	keys []Key // newest first
}

// Set replaces the keys.
func (r *Keyring) Set(keys []Key) {
	sorted := append([]Key(nil), keys...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].CreatedAt.After(sorted[j].CreatedAt) })
	r.mu.Lock()
	r.keys = sorted
	r.mu.Unlock()
}

// Keys returns the keys, newest first.
func (r *Keyring) Keys() []Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Key(nil), r.keys...)
}

// Current returns the newest key, the one that signs.
func (r *Keyring) Current() (Key, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.keys) == 0 {
		return Key{}, false
	}
	return r.keys[0], true
}

// Key implements authn.KeySource.
func (r *Keyring) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, k := range r.keys {
		if k.ID == kid {
			return k.Public(), nil
		}
	}
	return nil, authn.ErrUnknownKey
}

// JWKS returns the public JWK Set: every key, newest first.
func (r *Keyring) JWKS() authn.JWKSet {
	keys := r.Keys()
	set := authn.JWKSet{Keys: make([]authn.JWK, 0, len(keys))}
	for _, k := range keys {
		j, err := authn.PublicJWK(k.ID, k.Public())
		if err != nil {
			continue // cannot happen for Ed25519 keys
		}
		set.Keys = append(set.Keys, j)
	}
	return set
}

// Ready reports whether a key is loaded.
func (r *Keyring) Ready(context.Context) error {
	if _, ok := r.Current(); !ok {
		return errors.New("no signing key loaded yet")
	}
	return nil
}

// Issuer mints access tokens with a Keyring's current key.
type Issuer struct {
	Ring     *Keyring
	Issuer   string
	Audience string
	TTL      time.Duration
	Now      func() time.Time
}

// Issue returns a signed access token for userID in sessionID and its
// expiry.
func (i *Issuer) Issue(userID, sessionID string) (string, time.Time, error) {
	key, ok := i.Ring.Current()
	if !ok {
		return "", time.Time{}, apierror.New(apierror.Unavailable, "keys_unavailable", "signing keys are not loaded yet; retry shortly")
	}
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	t := now().UTC().Truncate(time.Second)
	exp := t.Add(i.TTL)
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, err
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": i.Issuer,
		"aud": i.Audience,
		"sub": userID,
		"sid": sessionID,
		"jti": hex.EncodeToString(jti[:]),
		"iat": t.Unix(),
		"nbf": t.Unix(),
		"exp": exp.Unix(),
	})
	tok.Header["kid"] = key.ID
	tok.Header["typ"] = authn.TokenType
	s, err := tok.SignedString(key.Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return s, exp, nil
}
