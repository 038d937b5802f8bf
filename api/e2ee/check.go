// Package e2ee is papo's end-to-end encryption of direct messages
// (docs/e2ee.md): the structural checks the services apply to envelopes
// and device keys (this file), the signatures and safety number
// (identity.go), and the sealing and opening of messages (seal.go) that
// clients use. It depends only on package api and the standard library.
package e2ee

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
)

// The envelope format this package writes and the only one it reads.
const (
	Version = 1
	Alg     = "p256-hkdf-sha256-a256gcm"
)

// Limits (docs/e2ee.md, "What the server checks").
const (
	// MaxDevices is how many device keys a user's directory holds.
	MaxDevices = 8
	// MaxKeys is how many wrapped keys an envelope holds: every device of
	// both users of a DM.
	MaxKeys = 2 * MaxDevices
	// MaxPlaintext bounds a text in bytes: api.MaxTextRunes characters of
	// at most 4 UTF-8 bytes each.
	MaxPlaintext = 4 * api.MaxTextRunes
	// MaxCiphertext is MaxPlaintext and the AES-GCM tag.
	MaxCiphertext = MaxPlaintext + tagSize
	// MaxEnvelopeBytes bounds an envelope encoded as JSON; it rides in a
	// WebSocket frame of 32 KiB.
	MaxEnvelopeBytes = 27 << 10

	// PublicKeySize is a P-256 public key, uncompressed; SignatureSize an
	// ECDSA P-256 signature as r‖s; WrappedKeySize a 32-byte content key
	// and its tag.
	PublicKeySize  = 65
	SignatureSize  = 64
	WrappedKeySize = 32 + tagSize
	ivSize         = 12
	tagSize        = 16
)

// CodeEnvelope is the error code of an envelope that breaks a rule;
// CodeDeviceKey of a device key that does.
const (
	CodeEnvelope  = "invalid_envelope"
	CodeDeviceKey = "invalid_device_key"
	CodeDeviceID  = "invalid_device_id"
)

var deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func fail(code, format string, args ...any) error {
	return &validate.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CheckDeviceID checks a device id: 1 to 64 of A-Z, a-z, 0-9, _ and -.
func CheckDeviceID(id string) error {
	if !deviceIDPattern.MatchString(id) {
		return fail(CodeDeviceID, "a device id is 1-64 characters of A-Z, a-z, 0-9, _ and -")
	}
	return nil
}

var b64 = base64.RawURLEncoding

// decodeField decodes a base64url field of exactly size bytes (or, when
// size is negative, of 0 to -size bytes).
func decodeField(code, name, s string, size int) ([]byte, error) {
	limit := size
	if limit < 0 {
		limit = -size
	}
	if len(s) > b64.EncodedLen(limit) {
		return nil, fail(code, "%s is longer than %d bytes", name, limit)
	}
	b, err := b64.Strict().DecodeString(s)
	if err != nil {
		return nil, fail(code, "%s is not base64url without padding", name)
	}
	if size >= 0 && len(b) != size {
		return nil, fail(code, "%s must be %d bytes, not %d", name, size, len(b))
	}
	return b, nil
}

// ParsePublicKey decodes a base64url P-256 public key and checks that it
// is a point of the curve.
func ParsePublicKey(code, name, s string) (*ecdh.PublicKey, error) {
	b, err := decodeField(code, name, s, PublicKeySize)
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		return nil, fail(code, "%s is not a P-256 public key", name)
	}
	return pub, nil
}

// CheckEnvelope checks an envelope's shape: what a server that cannot
// read it can still hold it to. members, when not empty, are the only
// users its keys may be wrapped for.
func CheckEnvelope(env *api.Envelope, members ...string) error {
	if env == nil {
		return fail(CodeEnvelope, "e2ee is missing")
	}
	if env.V != Version || env.Alg != Alg {
		return fail(CodeEnvelope, "envelope version %d, alg %q: only version %d, %q", env.V, env.Alg, Version, Alg)
	}
	if err := CheckDeviceID(env.Device); err != nil {
		return fail(CodeEnvelope, "device: %s", err.(*validate.Error).Message)
	}
	if _, err := ParsePublicKey(CodeEnvelope, "epk", env.EPK); err != nil {
		return err
	}
	if _, err := decodeField(CodeEnvelope, "iv", env.IV, ivSize); err != nil {
		return err
	}
	ct, err := decodeField(CodeEnvelope, "ct", env.CT, -MaxCiphertext)
	if err != nil {
		return err
	}
	if len(ct) <= tagSize {
		return fail(CodeEnvelope, "ct must hold at least one byte and the %d-byte tag", tagSize)
	}
	if n := len(env.Keys); n < 1 || n > MaxKeys {
		return fail(CodeEnvelope, "an envelope holds 1-%d keys, not %d", MaxKeys, n)
	}
	seen := make(map[[2]string]bool, len(env.Keys))
	for i, k := range env.Keys {
		if validate.UserID(k.User) != nil {
			return fail(CodeEnvelope, "keys[%d].user is not a user id", i)
		}
		if len(members) > 0 && !contains(members, k.User) {
			return fail(CodeEnvelope, "keys[%d].user is not a member of the room", i)
		}
		if CheckDeviceID(k.Device) != nil {
			return fail(CodeEnvelope, "keys[%d].device is not a device id", i)
		}
		if _, err := decodeField(CodeEnvelope, fmt.Sprintf("keys[%d].wk", i), k.WK, WrappedKeySize); err != nil {
			return err
		}
		id := [2]string{k.User, k.Device}
		if seen[id] {
			return fail(CodeEnvelope, "keys[%d] repeats a device", i)
		}
		seen[id] = true
	}
	// With the fields bounded, the whole is bounded too; this is the
	// documented total, checked on the encoding a receiver sees.
	if b, _ := json.Marshal(env); len(b) > MaxEnvelopeBytes {
		return fail(CodeEnvelope, "the envelope is over %d bytes", MaxEnvelopeBytes)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// CheckContent checks a message's or an edit's content as it arrives: a
// text (validate.Text), or an envelope of a valid shape, never both.
// Whether the room takes text or envelopes is the message service's to
// decide, from the room.
func CheckContent(text string, env *api.Envelope) error {
	if env == nil {
		return validate.Text(text)
	}
	if text != "" {
		return fail(CodeEnvelope, "a message carries text or e2ee, not both")
	}
	return CheckEnvelope(env)
}
