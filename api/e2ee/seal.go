package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/papochat/papo/api"
)

// Device is one device's key pair. Its private part never leaves the
// device: Private is for the application to keep it there.
type Device struct {
	ID  string
	key *ecdh.PrivateKey
}

// NewDevice generates the key of device id.
func NewDevice(id string) (*Device, error) {
	if err := CheckDeviceID(id); err != nil {
		return nil, err
	}
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate device key: %w", err)
	}
	return &Device{ID: id, key: k}, nil
}

// ParseDevice restores device id's key from Device.Private.
func ParseDevice(id string, private []byte) (*Device, error) {
	k, err := ecdh.P256().NewPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("parse device key: %w", err)
	}
	return &Device{ID: id, key: k}, nil
}

// Private returns the private key's 32 bytes.
func (d *Device) Private() []byte { return d.key.Bytes() }

// Public returns the public key as the directory publishes it.
func (d *Device) Public() string { return b64.EncodeToString(d.key.PublicKey().Bytes()) }

// Recipient is a device a message is wrapped for.
type Recipient struct {
	User   string
	Device string
	Key    *ecdh.PublicKey
}

// RecipientOf returns the recipient of a verified device key of user.
func RecipientOf(user string, d api.DeviceKey) (Recipient, error) {
	k, err := ParsePublicKey(CodeDeviceKey, "public_key", d.PublicKey)
	if err != nil {
		return Recipient{}, err
	}
	return Recipient{User: user, Device: d.DeviceID, Key: k}, nil
}

// ErrCannotDecrypt is what Open returns for an envelope it cannot open:
// not wrapped for this device, or altered. It never says which.
var ErrCannotDecrypt = errors.New("e2ee: cannot decrypt")

func contentAAD(roomID, senderUser, senderDevice string, epk []byte) []byte {
	return append([]byte("papo-e2ee-v1 msg\x00"+roomID+"\x00"+senderUser+"\x00"+senderDevice+"\x00"), epk...)
}

// kek derives the key that wraps a content key for one device from the
// two ECDH secrets (docs/e2ee.md, "A message").
func kek(ephemeral, static, epk []byte, roomID, senderDevice, user, device string) ([]byte, error) {
	secret := append(append([]byte{}, ephemeral...), static...)
	return hkdf.Key(sha256.New, secret, epk, "papo-e2ee-v1 wrap\x00"+roomID+"\x00"+senderDevice+"\x00"+user+"\x00"+device, 32)
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts text from sender (a device of senderUser) in roomID for
// every recipient.
func Seal(sender *Device, senderUser, roomID, text string, recipients []Recipient) (*api.Envelope, error) {
	if !utf8.ValidString(text) || utf8.RuneCountInString(text) > api.MaxTextRunes || text == "" {
		return nil, fail(CodeEnvelope, "text must be 1-%d characters of UTF-8", api.MaxTextRunes)
	}
	if n := len(recipients); n < 1 || n > MaxKeys {
		return nil, fail(CodeEnvelope, "a message is wrapped for 1-%d devices, not %d", MaxKeys, n)
	}
	ek, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ephemeral key: %w", err)
	}
	ck := make([]byte, 32)
	iv := make([]byte, ivSize)
	rand.Read(ck)
	rand.Read(iv)
	return seal(sender, ek, ck, iv, senderUser, roomID, []byte(text), recipients)
}

// seal is Seal with its random inputs given, for known-answer tests.
func seal(sender *Device, ek *ecdh.PrivateKey, ck, iv []byte, senderUser, roomID string, text []byte, recipients []Recipient) (*api.Envelope, error) {
	epk := ek.PublicKey().Bytes()
	aead, err := gcm(ck)
	if err != nil {
		return nil, err
	}
	env := &api.Envelope{
		V: Version, Alg: Alg, Device: sender.ID, EPK: b64.EncodeToString(epk), IV: b64.EncodeToString(iv),
		CT: b64.EncodeToString(aead.Seal(nil, iv, text, contentAAD(roomID, senderUser, sender.ID, epk))),
	}
	zero := make([]byte, ivSize)
	for _, r := range recipients {
		eph, err := ek.ECDH(r.Key)
		if err != nil {
			return nil, fmt.Errorf("ecdh with %s/%s: %w", r.User, r.Device, err)
		}
		static, err := sender.key.ECDH(r.Key)
		if err != nil {
			return nil, fmt.Errorf("ecdh with %s/%s: %w", r.User, r.Device, err)
		}
		k, err := kek(eph, static, epk, roomID, sender.ID, r.User, r.Device)
		if err != nil {
			return nil, err
		}
		wrap, err := gcm(k)
		if err != nil {
			return nil, err
		}
		env.Keys = append(env.Keys, api.WrappedKey{User: r.User, Device: r.Device, WK: b64.EncodeToString(wrap.Seal(nil, zero, ck, nil))})
	}
	return env, nil
}

// Open decrypts env, sent in roomID by senderUser from the device whose
// verified public key is senderKey, as device me of user myUser.
func Open(me *Device, myUser, roomID, senderUser string, senderKey *ecdh.PublicKey, env *api.Envelope) (string, error) {
	if CheckEnvelope(env) != nil {
		return "", ErrCannotDecrypt
	}
	var wk []byte
	for _, k := range env.Keys {
		if k.User == myUser && k.Device == me.ID {
			wk, _ = b64.DecodeString(k.WK)
		}
	}
	if wk == nil {
		return "", ErrCannotDecrypt
	}
	epkRaw, _ := b64.DecodeString(env.EPK)
	epk, _ := ecdh.P256().NewPublicKey(epkRaw)
	eph, err := me.key.ECDH(epk)
	if err != nil {
		return "", ErrCannotDecrypt
	}
	static, err := me.key.ECDH(senderKey)
	if err != nil {
		return "", ErrCannotDecrypt
	}
	k, err := kek(eph, static, epkRaw, roomID, env.Device, myUser, me.ID)
	if err != nil {
		return "", ErrCannotDecrypt
	}
	wrap, _ := gcm(k)
	ck, err := wrap.Open(nil, make([]byte, ivSize), wk, nil)
	if err != nil {
		return "", ErrCannotDecrypt
	}
	aead, _ := gcm(ck)
	iv, _ := b64.DecodeString(env.IV)
	ct, _ := b64.DecodeString(env.CT)
	text, err := aead.Open(nil, iv, ct, contentAAD(roomID, senderUser, env.Device, epkRaw))
	if err != nil || !utf8.Valid(text) {
		return "", ErrCannotDecrypt
	}
	return string(text), nil
}
