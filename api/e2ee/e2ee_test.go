package e2ee

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
)

// The known answers below were computed independently with Python's
// cryptography package (not with this package), from the same inputs.

func fixedKey(t *testing.T, label string) *ecdh.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte(label))
	k, err := ecdh.P256().NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestSealKnownAnswer(t *testing.T) {
	sender := &Device{ID: "alice-1", key: fixedKey(t, "sender")}
	recipient := &Device{ID: "bob-1", key: fixedKey(t, "recipient")}
	env, err := seal(sender, fixedKey(t, "ephemeral"), seq(32), seq(12), "u_alice", "dm_x", []byte("hello, bob"),
		[]Recipient{{User: "u_bob", Device: "bob-1", Key: recipient.key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"epk": "BJp4HKbQVafzDQyf-Hk2xzn2gW719ecrS5RkBLChqDsqwZ-EKUXqK_ZaoWSbKwL_eYVMjV7PzUA4YuipfqZsccE",
		"ct":  "L2e6d6rJ4nniIwLidcVSBW2eO3tWzuzOKew",
		"wk":  "QtrzBkiwaI7E3kHOQOHBJnPPNen7uwjeRkLVORmYO53u6hE5_ZFfWjVU3x0-nI3n",
	}
	got := map[string]string{"epk": env.EPK, "ct": env.CT, "wk": env.Keys[0].WK}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s = %s, want %s", k, got[k], want[k])
		}
	}
	text, err := Open(recipient, "u_bob", "dm_x", "u_alice", sender.key.PublicKey(), env)
	if err != nil || text != "hello, bob" {
		t.Fatalf("Open = %q, %v; want hello, bob", text, err)
	}
}

func TestVerifyDeviceKnownAnswer(t *testing.T) {
	ik := "BCvmtQS7jIIinEqLLjaVn1iC2Mjz0uMZYj1Pi7pYkVZAffO76MHs24N-hWTL3l66vUSEIXpwK24xLPSKQ5xJUOo"
	d := api.DeviceKey{DeviceID: "bob-1",
		PublicKey: "BJ_u7akD2D0B-IWdXBFx1y_5zl_yIbSApGBo2X49QN6ezYRdgSl5HCSFMpkbRirp476jVPKnrLxuDW4VeDubAvs",
		Signature: "quHfsVJzzghBKszBtir7EmozbEogSc7vbuZ6ByxEw5L7xh9Eu2vFlQG9Rh4Vx_CTePp2AfZyFExiErfqEuYi8w"}
	if err := VerifyDevice("u_bob", ik, d); err != nil {
		t.Fatalf("a signature made elsewhere: %v", err)
	}
	// The signature binds the user and the device id.
	if err := VerifyDevice("u_eve", ik, d); err == nil {
		t.Error("verified for another user")
	}
	moved := d
	moved.DeviceID = "bob-2"
	if err := VerifyDevice("u_bob", ik, moved); err == nil {
		t.Error("verified under another device id")
	}
}

func TestSafetyNumberKnownAnswer(t *testing.T) {
	alice := "BB4yPBnN2BErA-x83gTGhHrNr9n2u-qjzoVoAA6T9SU8lcdr1oOHUwCNDEfYtVc4zwI2CTeMRPCktBLATSAhtck"
	bob := "BCvmtQS7jIIinEqLLjaVn1iC2Mjz0uMZYj1Pi7pYkVZAffO76MHs24N-hWTL3l66vUSEIXpwK24xLPSKQ5xJUOo"
	const want = "65854 63105 85118 17035 00746 09489"
	for _, got := range []func() (string, error){
		func() (string, error) { return SafetyNumber("u_alice", alice, "u_bob", bob) },
		func() (string, error) { return SafetyNumber("u_bob", bob, "u_alice", alice) },
	} {
		if n, err := got(); err != nil || n != want {
			t.Errorf("SafetyNumber = %q, %v; want %q on both sides", n, err, want)
		}
	}
}

type party struct {
	user string
	id   *Identity
	dev  *Device
}

func newParty(t *testing.T, user, device string) party {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDevice(device)
	if err != nil {
		t.Fatal(err)
	}
	return party{user: user, id: id, dev: d}
}

func (p party) recipient() Recipient {
	return Recipient{User: p.user, Device: p.dev.ID, Key: p.dev.key.PublicKey()}
}

func TestSealOpenRoundTrip(t *testing.T) {
	alice, bob, eve := newParty(t, "u_alice", "a1"), newParty(t, "u_bob", "b1"), newParty(t, "u_eve", "e1")
	env, err := Seal(alice.dev, alice.user, "dm_1", "olá 👋", []Recipient{alice.recipient(), bob.recipient()})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckEnvelope(env, alice.user, bob.user); err != nil {
		t.Fatalf("a sealed envelope fails the server's check: %v", err)
	}
	for _, p := range []party{alice, bob} {
		if got, err := Open(p.dev, p.user, "dm_1", alice.user, alice.dev.key.PublicKey(), env); err != nil || got != "olá 👋" {
			t.Errorf("%s opens %q, %v", p.user, got, err)
		}
	}
	tests := []struct {
		name   string
		me     party
		room   string
		sender string
		key    *ecdh.PublicKey
	}{
		{"a device it was not wrapped for", eve, "dm_1", alice.user, alice.dev.key.PublicKey()},
		{"another room", bob, "dm_2", alice.user, alice.dev.key.PublicKey()},
		{"another sender", bob, "dm_1", "u_eve", alice.dev.key.PublicKey()},
		{"a forged sender device key", bob, "dm_1", alice.user, eve.dev.key.PublicKey()},
	}
	for _, tt := range tests {
		if _, err := Open(tt.me.dev, tt.me.user, tt.room, tt.sender, tt.key, env); !errors.Is(err, ErrCannotDecrypt) {
			t.Errorf("%s: err = %v, want ErrCannotDecrypt", tt.name, err)
		}
	}
	// Restored keys read the same envelope (a device keeps its history).
	again, err := ParseDevice("b1", bob.dev.Private())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(again, bob.user, "dm_1", alice.user, alice.dev.key.PublicKey(), env); err != nil || got != "olá 👋" {
		t.Errorf("a restored device opens %q, %v", got, err)
	}
}

func TestSignedDirectory(t *testing.T) {
	bob := newParty(t, "u_bob", "b1")
	sig, err := bob.id.SignDevice(bob.user, "b1", bob.dev.Public())
	if err != nil {
		t.Fatal(err)
	}
	restored, err := ParseIdentity(bob.id.Private())
	if err != nil || restored.Public() != bob.id.Public() {
		t.Fatalf("ParseIdentity: %v", err)
	}
	other := newParty(t, "u_bob", "b2")
	forged, _ := other.id.SignDevice(bob.user, "b2", other.dev.Public())
	dir := api.KeyDirectory{UserID: bob.user, IdentityKey: bob.id.Public(), Devices: []api.DeviceKey{
		{DeviceID: "b1", PublicKey: bob.dev.Public(), Signature: sig},
		{DeviceID: "b2", PublicKey: other.dev.Public(), Signature: forged},
	}}
	good, bad := VerifyDirectory(dir)
	if len(good) != 1 || good[0].DeviceID != "b1" || len(bad) != 1 || bad[0] != "b2" {
		t.Errorf("VerifyDirectory = %v, %v; want b1 good, b2 (signed by another identity) bad", good, bad)
	}
}

// maxEnvelope is the largest envelope the rules allow.
func maxEnvelope(t *testing.T) *api.Envelope {
	t.Helper()
	alice := newParty(t, "u_alice", "a1")
	var rs []Recipient
	for i := range MaxKeys {
		user := "u_" + strings.Repeat("a", validate.MaxUserID-3) + string(rune('a'+i%2))
		d, _ := NewDevice(strings.Repeat("d", 62) + string(rune('a'+i/2)) + "x")
		rs = append(rs, Recipient{User: user, Device: d.ID, Key: d.key.PublicKey()})
	}
	env, err := Seal(alice.dev, alice.user, "dm_1", strings.Repeat("😀", api.MaxTextRunes), rs)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestEnvelopeLimits(t *testing.T) {
	env := maxEnvelope(t)
	if err := CheckEnvelope(env); err != nil {
		t.Fatalf("the largest allowed envelope is refused: %v", err)
	}
	if b, _ := json.Marshal(env); len(b) > MaxEnvelopeBytes {
		t.Fatalf("the largest allowed envelope is %d bytes, over MaxEnvelopeBytes %d", len(b), MaxEnvelopeBytes)
	}
	good := func() *api.Envelope {
		e := *maxEnvelope(t)
		e.Keys = append([]api.WrappedKey{}, e.Keys[:2]...)
		return &e
	}
	long := b64.EncodeToString(make([]byte, MaxCiphertext+1))
	tests := []struct {
		name   string
		mutate func(e *api.Envelope)
		want   string // a word of the message
	}{
		{"nil is refused", nil, "missing"},
		{"another version", func(e *api.Envelope) { e.V = 2 }, "version"},
		{"another alg", func(e *api.Envelope) { e.Alg = "x25519" }, "alg"},
		{"a bad sender device id", func(e *api.Envelope) { e.Device = "a b" }, "device"},
		{"an epk off the curve", func(e *api.Envelope) { e.EPK = b64.EncodeToString(append([]byte{4}, make([]byte, 64)...)) }, "epk"},
		{"a short iv", func(e *api.Envelope) { e.IV = b64.EncodeToString(make([]byte, 11)) }, "iv"},
		{"padded base64", func(e *api.Envelope) { e.IV = "AAAAAAAAAAAAAAAA=" }, "iv"},
		{"a ct over MaxCiphertext", func(e *api.Envelope) { e.CT = long }, "ct"},
		{"a ct of the tag only", func(e *api.Envelope) { e.CT = b64.EncodeToString(make([]byte, 16)) }, "ct"},
		{"no keys", func(e *api.Envelope) { e.Keys = nil }, "keys"},
		{"more than MaxKeys", func(e *api.Envelope) {
			for len(e.Keys) <= MaxKeys {
				k := e.Keys[0]
				k.Device = "x" + strings.Repeat("1", len(e.Keys))
				e.Keys = append(e.Keys, k)
			}
		}, "keys"},
		{"a repeated device", func(e *api.Envelope) { e.Keys[1] = e.Keys[0] }, "repeats"},
		{"a wk of the wrong size", func(e *api.Envelope) { e.Keys[0].WK = b64.EncodeToString(make([]byte, 47)) }, "wk"},
		{"a key for no user", func(e *api.Envelope) { e.Keys[0].User = "" }, "user"},
	}
	for _, tt := range tests {
		var e *api.Envelope
		if tt.mutate != nil {
			e = good()
			tt.mutate(e)
		}
		err := CheckEnvelope(e)
		var ve *validate.Error
		if !errors.As(err, &ve) || ve.Code != CodeEnvelope || !strings.Contains(ve.Message, tt.want) {
			t.Errorf("%s: err = %v, want %s mentioning %q", tt.name, err, CodeEnvelope, tt.want)
		}
	}
	e := good()
	if err := CheckEnvelope(e, "u_alice", "u_bob"); err == nil || !strings.Contains(err.Error(), "member") {
		t.Errorf("keys for non-members: err = %v, want a refusal", err)
	}
}

func TestSealLimits(t *testing.T) {
	alice := newParty(t, "u_alice", "a1")
	r := []Recipient{alice.recipient()}
	if _, err := Seal(alice.dev, alice.user, "dm_1", strings.Repeat("x", api.MaxTextRunes+1), r); err == nil {
		t.Error("a text over the limit was sealed")
	}
	if _, err := Seal(alice.dev, alice.user, "dm_1", "", r); err == nil {
		t.Error("an empty text was sealed")
	}
	if _, err := Seal(alice.dev, alice.user, "dm_1", "hi", nil); err == nil {
		t.Error("a text for no device was sealed")
	}
}

func FuzzCheckEnvelope(f *testing.F) {
	alice, _ := NewDevice("a1")
	env, _ := Seal(alice, "u_alice", "dm_1", "hello", []Recipient{{User: "u_alice", Device: "a1", Key: alice.key.PublicKey()}})
	b, _ := json.Marshal(env)
	f.Add(b)
	f.Add([]byte(`{"v":1,"alg":"p256-hkdf-sha256-a256gcm","keys":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e api.Envelope
		if json.Unmarshal(data, &e) != nil {
			return
		}
		if err := CheckEnvelope(&e); err != nil {
			var ve *validate.Error
			if !errors.As(err, &ve) || ve.Code != CodeEnvelope {
				t.Fatalf("a refusal that is not %s: %v", CodeEnvelope, err)
			}
			return
		}
		// Whatever passes is bounded and opens to nothing or to a text.
		if out, _ := json.Marshal(&e); len(out) > MaxEnvelopeBytes {
			t.Fatalf("an accepted envelope of %d bytes", len(out))
		}
		if _, err := Open(alice, "u_alice", "dm_1", "u_alice", alice.key.PublicKey(), &e); err != nil && !errors.Is(err, ErrCannotDecrypt) {
			t.Fatalf("Open: %v", err)
		}
	})
}
