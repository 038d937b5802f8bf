package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
)

func signedDevice(t *testing.T, id *e2ee.Identity, user, device string) api.PutDeviceKeyRequest {
	t.Helper()
	d, err := e2ee.NewDevice(device)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := id.SignDevice(user, device, d.Public())
	if err != nil {
		t.Fatal(err)
	}
	return api.PutDeviceKeyRequest{IdentityKey: id.Public(), PublicKey: d.Public(), Signature: sig}
}

func TestKeyDirectoryRoutes(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register(t, "bob", "password-bob")
	alice := e.register(t, "alice", "password-alice")
	bobTok := e.login(t, "bob", "password-bob").AccessToken
	aliceTok := e.login(t, "alice", "password-alice").AccessToken
	ik, _ := e2ee.NewIdentity()
	path := "/api/v1/users/" + bob.ID + "/keys"

	r := e.do(t, "GET", path, aliceTok, nil)
	var dir api.KeyDirectory
	r.decode(t, &dir)
	if r.Status != http.StatusOK || dir.IdentityKey != "" || dir.Devices == nil || len(dir.Devices) != 0 {
		t.Fatalf("a directory before any key: %d %s; want 200, no identity, devices []", r.Status, r.Body)
	}
	if r := e.do(t, "PUT", path+"/devices/b1", bobTok, signedDevice(t, ik, bob.ID, "b1")); r.Status != http.StatusOK {
		t.Fatalf("PUT b1: %d %s", r.Status, r.Body)
	}
	r = e.do(t, "GET", path, aliceTok, nil)
	r.decode(t, &dir)
	if good, _ := e2ee.VerifyDirectory(dir); dir.IdentityKey != ik.Public() || len(good) != 1 || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("the peer reads %s (Cache-Control %q); want b1 under bob's identity, no-store", r.Body, r.Header.Get("Cache-Control"))
	}

	tests := []struct {
		name         string
		method, path string
		token        string
		body         any
		status       int
		code         string
	}{
		{"no token", "GET", path, "", nil, 401, ""},
		{"an unknown user", "GET", "/api/v1/users/nobody/keys", aliceTok, nil, 404, "user_not_found"},
		{"another user's directory", "PUT", path + "/devices/a1", aliceTok, signedDevice(t, ik, bob.ID, "a1"), 403, "not_your_keys"},
		{"deleting from another's directory", "DELETE", path + "/devices/b1", aliceTok, nil, 403, "not_your_keys"},
		{"a key signed for another user", "PUT", path + "/devices/b2", bobTok, signedDevice(t, ik, alice.ID, "b2"), 400, e2ee.CodeDeviceKey},
		{"a device id too long", "PUT", path + "/devices/" + strings.Repeat("d", 65), bobTok, signedDevice(t, ik, bob.ID, "b2"), 400, e2ee.CodeDeviceID},
		{"a public key off the curve", "PUT", path + "/devices/b2", bobTok, api.PutDeviceKeyRequest{IdentityKey: ik.Public(), PublicKey: "BA" + strings.Repeat("A", 85), Signature: strings.Repeat("A", 86)}, 400, e2ee.CodeDeviceKey},
		{"a body over 8 KiB", "PUT", path + "/devices/b2", bobTok, `{"public_key":"` + strings.Repeat("A", 9<<10) + `"}`, 413, "body_too_large"},
		{"an unknown device", "DELETE", path + "/devices/b9", bobTok, nil, 404, "device_not_found"},
		{"removing b1", "DELETE", path + "/devices/b1", bobTok, nil, 204, ""},
	}
	for _, tt := range tests {
		r := e.do(t, tt.method, tt.path, tt.token, tt.body)
		if r.Status != tt.status || (tt.code != "" && r.code() != tt.code) {
			t.Errorf("%s: %d %s; want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
	}
	r = e.do(t, "GET", path, aliceTok, nil)
	r.decode(t, &dir)
	if len(dir.Devices) != 0 {
		t.Errorf("after removing b1 the peer still sees %v", dir.Devices)
	}
}
