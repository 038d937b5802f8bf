package e2ee

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"

	"github.com/papochat/papo/api"
)

// Identity is a user's long-term identity key: it signs the user's device
// keys. Its private part stays on the user's devices.
type Identity struct {
	key *ecdsa.PrivateKey
}

// NewIdentity generates an identity key.
func NewIdentity() (*Identity, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate identity key: %w", err)
	}
	return &Identity{key: k}, nil
}

// ParseIdentity restores an identity key from Identity.Private.
func ParseIdentity(private []byte) (*Identity, error) {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), private)
	if err != nil {
		return nil, fmt.Errorf("parse identity key: %w", err)
	}
	return &Identity{key: k}, nil
}

// Private returns the private key's 32 bytes, for an application to keep
// on the device (encrypted at rest: that is the application's part).
func (id *Identity) Private() []byte {
	b, _ := id.key.Bytes()
	return b
}

// Public returns the public key as the directory publishes it.
func (id *Identity) Public() string {
	b, _ := id.key.PublicKey.Bytes()
	return b64.EncodeToString(b)
}

// deviceMessage is what an identity key signs for a device.
func deviceMessage(userID, deviceID string, pub []byte) []byte {
	m := []byte("papo-e2ee-v1 device\x00" + userID + "\x00" + deviceID + "\x00")
	return append(m, pub...)
}

// SignDevice returns the signature that vouches for pub as the key of
// userID's device deviceID.
func (id *Identity) SignDevice(userID, deviceID, pub string) (string, error) {
	raw, err := decodeField(CodeDeviceKey, "public_key", pub, PublicKeySize)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(deviceMessage(userID, deviceID, raw))
	r, s, err := ecdsa.Sign(rand.Reader, id.key, h[:])
	if err != nil {
		return "", fmt.Errorf("sign device key: %w", err)
	}
	sig := make([]byte, SignatureSize)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return b64.EncodeToString(sig), nil
}

// ParseIdentityKey decodes a published identity key.
func ParseIdentityKey(s string) (*ecdsa.PublicKey, error) {
	b, err := decodeField(CodeDeviceKey, "identity_key", s, PublicKeySize)
	if err != nil {
		return nil, err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return nil, fail(CodeDeviceKey, "identity_key is not a P-256 public key")
	}
	return pub, nil
}

// VerifyDevice checks that d is a well-formed key of userID's device
// d.DeviceID signed by identityKey.
func VerifyDevice(userID, identityKey string, d api.DeviceKey) error {
	if err := CheckDeviceID(d.DeviceID); err != nil {
		return err
	}
	ik, err := ParseIdentityKey(identityKey)
	if err != nil {
		return err
	}
	if _, err := ParsePublicKey(CodeDeviceKey, "public_key", d.PublicKey); err != nil {
		return err
	}
	raw, _ := b64.DecodeString(d.PublicKey)
	sig, err := decodeField(CodeDeviceKey, "signature", d.Signature, SignatureSize)
	if err != nil {
		return err
	}
	h := sha256.Sum256(deviceMessage(userID, d.DeviceID, raw))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(ik, h[:], r, s) {
		return fail(CodeDeviceKey, "the signature of device %s does not verify under the identity key", d.DeviceID)
	}
	return nil
}

// VerifyDirectory checks every device of dir against its identity key and
// returns the devices that verify; a directory with no identity key has
// none.
func VerifyDirectory(dir api.KeyDirectory) (good []api.DeviceKey, bad []string) {
	if dir.IdentityKey == "" {
		for _, d := range dir.Devices {
			bad = append(bad, d.DeviceID)
		}
		return nil, bad
	}
	for _, d := range dir.Devices {
		if VerifyDevice(dir.UserID, dir.IdentityKey, d) == nil {
			good = append(good, d)
		} else {
			bad = append(bad, d.DeviceID)
		}
	}
	return good, bad
}

// SafetyNumber is the number two users compare to verify their DM: six
// groups of five digits from both identity keys, the same whichever of
// the two computes it.
func SafetyNumber(userA, identityA, userB, identityB string) (string, error) {
	if userB < userA {
		userA, identityA, userB, identityB = userB, identityB, userA, identityA
	}
	ka, err := decodeField(CodeDeviceKey, "identity_key", identityA, PublicKeySize)
	if err != nil {
		return "", err
	}
	kb, err := decodeField(CodeDeviceKey, "identity_key", identityB, PublicKeySize)
	if err != nil {
		return "", err
	}
	m := []byte("papo-e2ee-v1 safety\x00" + userA + "\x00")
	m = append(m, ka...)
	m = append(m, "\x00"+userB+"\x00"...)
	m = append(m, kb...)
	h := sha256.Sum256(m)
	groups := make([]string, 6)
	for i := range groups {
		var b [8]byte
		copy(b[3:], h[5*i:5*i+5])
		groups[i] = fmt.Sprintf("%05d", binary.BigEndian.Uint64(b[:])%100000)
	}
	return strings.Join(groups, " "), nil
}
