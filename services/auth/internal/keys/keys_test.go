package keys

import (
	"context"
	"fmt"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore/memstore"
)

type signer struct {
	t    *testing.T
	user string
	id   *e2ee.Identity
}

func newSigner(t *testing.T, user string) signer {
	t.Helper()
	id, err := e2ee.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return signer{t: t, user: user, id: id}
}

// device returns a signed upload of a new key for deviceID.
func (s signer) device(deviceID string) api.PutDeviceKeyRequest {
	s.t.Helper()
	d, err := e2ee.NewDevice(deviceID)
	if err != nil {
		s.t.Fatal(err)
	}
	sig, err := s.id.SignDevice(s.user, deviceID, d.Public())
	if err != nil {
		s.t.Fatal(err)
	}
	return api.PutDeviceKeyRequest{IdentityKey: s.id.Public(), PublicKey: d.Public(), Signature: sig}
}

func TestPutGetRemove(t *testing.T) {
	ctx := context.Background()
	dir := New(memstore.New(), nil)
	bob := newSigner(t, "u_bob")

	empty, err := dir.Get(ctx, "u_bob")
	if err != nil || empty.IdentityKey != "" || len(empty.Devices) != 0 || empty.UserID != "u_bob" {
		t.Fatalf("Get before any key = %+v, %v; want an empty directory", empty, err)
	}
	if _, err := dir.Put(ctx, "u_bob", "b1", bob.device("b1")); err != nil {
		t.Fatal(err)
	}
	got, err := dir.Put(ctx, "u_bob", "b2", bob.device("b2"))
	if err != nil {
		t.Fatal(err)
	}
	if got.IdentityKey != bob.id.Public() || len(got.Devices) != 2 {
		t.Fatalf("after two devices: %+v", got)
	}
	if good, bad := e2ee.VerifyDirectory(got); len(good) != 2 || len(bad) != 0 {
		t.Errorf("the stored directory verifies %d devices, refuses %v", len(good), bad)
	}
	if err := dir.Remove(ctx, "u_bob", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := dir.Remove(ctx, "u_bob", "b1"); apierror.CodeOf(err) != "device_not_found" {
		t.Errorf("removing it again: err = %v, want device_not_found", err)
	}
	got, _ = dir.Get(ctx, "u_bob")
	if len(got.Devices) != 1 || got.Devices[0].DeviceID != "b2" {
		t.Errorf("after removing b1: %+v", got.Devices)
	}
}

func TestPutRefusals(t *testing.T) {
	ctx := context.Background()
	dir := New(memstore.New(), nil)
	bob, eve := newSigner(t, "u_bob"), newSigner(t, "u_bob")
	if _, err := dir.Put(ctx, "u_bob", "b1", bob.device("b1")); err != nil {
		t.Fatal(err)
	}
	forged := bob.device("b2")
	forged.Signature = bob.device("b3").Signature
	tests := []struct {
		name   string
		user   string
		device string
		req    api.PutDeviceKeyRequest
		code   string
	}{
		{"a signature for another device", "u_bob", "b2", forged, e2ee.CodeDeviceKey},
		{"a key signed for another user", "u_alice", "b2", bob.device("b2"), e2ee.CodeDeviceKey},
		{"a bad device id", "u_bob", "b 2", bob.device("b2"), e2ee.CodeDeviceID},
		{"another identity", "u_bob", "e1", eve.device("e1"), "identity_mismatch"},
		{"no identity key", "u_bob", "b2", api.PutDeviceKeyRequest{PublicKey: forged.PublicKey, Signature: forged.Signature}, e2ee.CodeDeviceKey},
	}
	for _, tt := range tests {
		if _, err := dir.Put(ctx, tt.user, tt.device, tt.req); apierror.CodeOf(err) != tt.code {
			t.Errorf("%s: err = %v, want %s", tt.name, err, tt.code)
		}
	}
}

func TestReplaceIdentityDropsItsDevices(t *testing.T) {
	ctx := context.Background()
	dir := New(memstore.New(), nil)
	old, fresh := newSigner(t, "u_bob"), newSigner(t, "u_bob")
	for _, id := range []string{"b1", "b2"} {
		if _, err := dir.Put(ctx, "u_bob", id, old.device(id)); err != nil {
			t.Fatal(err)
		}
	}
	req := fresh.device("b3")
	req.ReplaceIdentity = true
	got, err := dir.Put(ctx, "u_bob", "b3", req)
	if err != nil {
		t.Fatal(err)
	}
	if got.IdentityKey != fresh.id.Public() || len(got.Devices) != 1 || got.Devices[0].DeviceID != "b3" {
		t.Errorf("after a replaced identity: %+v; want only b3 under the new key", got)
	}
}

func TestDeviceLimit(t *testing.T) {
	ctx := context.Background()
	dir := New(memstore.New(), nil)
	bob := newSigner(t, "u_bob")
	for i := range e2ee.MaxDevices {
		if _, err := dir.Put(ctx, "u_bob", fmt.Sprint("b", i), bob.device(fmt.Sprint("b", i))); err != nil {
			t.Fatalf("device %d of %d: %v", i+1, e2ee.MaxDevices, err)
		}
	}
	if _, err := dir.Put(ctx, "u_bob", "one-more", bob.device("one-more")); apierror.CodeOf(err) != "too_many_devices" {
		t.Errorf("device %d: err = %v, want too_many_devices", e2ee.MaxDevices+1, err)
	}
	// Replacing a device's key is not one more.
	if _, err := dir.Put(ctx, "u_bob", "b0", bob.device("b0")); err != nil {
		t.Errorf("a new key for a listed device at the limit: %v", err)
	}
}
