package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// JWK is one public key of a JWK Set (RFC 7517). Only the members papo
// reads or writes are here: OKP (Ed25519), EC (P-256) and RSA keys.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKSet is a JWK Set document, as GET /api/v1/auth/jwks answers it.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// minRSABits is the smallest RSA modulus accepted from a JWKS (RFC 8725
// asks for at least 2048 bits).
const minRSABits = 2048

var b64 = base64.RawURLEncoding

// PublicJWK describes pub as a signature-verification JWK with id kid.
func PublicJWK(kid string, pub crypto.PublicKey) (JWK, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Crv: "Ed25519", Kid: kid, Use: "sig", Alg: "EdDSA", X: b64.EncodeToString(k)}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return JWK{}, errors.New("only P-256 EC keys are supported")
		}
		b, err := k.Bytes() // uncompressed point: 0x04 || X || Y
		if err != nil {
			return JWK{}, err
		}
		return JWK{Kty: "EC", Crv: "P-256", Kid: kid, Use: "sig", Alg: "ES256",
			X: b64.EncodeToString(b[1:33]), Y: b64.EncodeToString(b[33:])}, nil
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: "RS256",
			N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	default:
		return JWK{}, fmt.Errorf("unsupported public key type %T", pub)
	}
}

// PublicKey decodes the key. It refuses private members by construction
// (they are not read) and keys too weak to trust.
func (j JWK) PublicKey() (crypto.PublicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("key %q is for %q, not signatures", j.Kid, j.Use)
	}
	switch j.Kty {
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("key %q: unsupported OKP curve %q", j.Kid, j.Crv)
		}
		x, err := b64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q: bad Ed25519 x", j.Kid)
		}
		return ed25519.PublicKey(x), nil
	case "EC":
		if j.Crv != "P-256" {
			return nil, fmt.Errorf("key %q: unsupported EC curve %q", j.Kid, j.Crv)
		}
		x, errX := b64.DecodeString(j.X)
		y, errY := b64.DecodeString(j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("key %q: bad P-256 coordinates", j.Kid)
		}
		// ParseUncompressedPublicKey checks that the point is on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", j.Kid, err)
		}
		return pub, nil
	case "RSA":
		n, errN := b64.DecodeString(j.N)
		e, errE := b64.DecodeString(j.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("key %q: bad RSA n or e", j.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("key %q: RSA key of %d bits is under %d", j.Kid, pub.N.BitLen(), minRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("key %q: bad RSA exponent", j.Kid)
		}
		return pub, nil
	default:
		return nil, fmt.Errorf("key %q: unsupported key type %q", j.Kid, j.Kty)
	}
}

// ParseJWKS decodes a JWK Set into public keys by kid. Keys papo cannot
// use (encryption keys, unknown types, no kid) are skipped, so an issuer
// that publishes more than papo understands still works; a set with no
// usable key at all is an error.
func ParseJWKS(b []byte) (map[string]crypto.PublicKey, error) {
	var set JWKSet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("decode JWK set: %w", err)
	}
	keys := make(map[string]crypto.PublicKey, len(set.Keys))
	var errs []error
	for _, j := range set.Keys {
		if j.Kid == "" {
			errs = append(errs, errors.New("a key has no kid"))
			continue
		}
		pub, err := j.PublicKey()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys[j.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWK set holds no usable signing key: %w", errors.Join(errs...))
	}
	return keys, nil
}
