package e2e

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
)

// TestWebPushThroughTheRealStack: on a stack as `make run` makes it (the
// launcher's VAPID keys), a browser-style subscription registered as a
// webpush device gets, when its owner is offline, a push that the
// receiver behind the `push` binding intercepts and decrypts with the
// subscription's keys (RFC 8291, aes128gcm): the notification JSON the
// service worker shows, signed with the VAPID key the gateway serves.
func TestWebPushThroughTheRealStack(t *testing.T) {
	s, recv := notificationStack(t, "local")
	ctx := context.Background()
	alice := newUser(t, s, "ali")
	bob := newUser(t, s, "bob") // offline, subscribed in "his browser"

	var key struct {
		PublicKey string `json:"public_key"`
	}
	if err := bob.Do(ctx, http.MethodGet, "/api/v1/devices/webpush-key", nil, &key); err != nil {
		t.Fatalf("webpush-key: %v", err)
	}
	// What a browser's PushManager.subscribe makes: a P-256 key pair and a
	// 16-byte auth secret, and an endpoint at its push service.
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	endpoint := "https://push.papo.test/send/" + randomName("sub-")
	device := map[string]any{"platform": "webpush", "subscription": map[string]any{
		"endpoint": endpoint,
		"keys":     map[string]string{"p256dh": base64.RawURLEncoding.EncodeToString(ua.PublicKey().Bytes()), "auth": base64.RawURLEncoding.EncodeToString(auth)},
	}}
	if err := bob.Do(ctx, http.MethodPost, "/api/v1/devices", device, nil); err != nil {
		t.Fatalf("register the webpush device: %v", err)
	}

	room, err := alice.CreateRoom(ctx, randomName("push"), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	if err := alice.Send(ctx, room.ID, randomName("c"), "Are you coming tonight?"); err != nil {
		t.Fatal(err)
	}
	within(t, 30*time.Second, "a Web Push for bob's subscription", func() bool { return len(recv.rawPushes(endpoint)) > 0 })
	p := recv.rawPushes(endpoint)[0]

	if got := p.header.Get("Content-Encoding"); got != "aes128gcm" {
		t.Errorf("Content-Encoding %q; want aes128gcm", got)
	}
	if a := p.header.Get("Authorization"); !strings.HasPrefix(a, "vapid t=") || !strings.Contains(a, "k="+key.PublicKey) {
		t.Errorf("Authorization %q; want a VAPID JWT with the served key %s", a, key.PublicKey)
	}
	if p.header.Get("Ttl") == "" {
		t.Error("no TTL header")
	}
	plain, err := decryptWebPush(p.body, ua, auth)
	if err != nil {
		t.Fatalf("decrypt the push with the subscription's keys: %v", err)
	}
	var n map[string]any
	if err := json.Unmarshal(plain, &n); err != nil {
		t.Fatalf("push payload %q: %v", plain, err)
	}
	if n["room_id"] != room.ID || n["title"] == nil || n["title"] == "" || n["body"] == nil || n["count"] != 1.0 {
		t.Fatalf("push payload %v; want the room, a title, a body and a count of 1", n)
	}
	t.Logf("decrypted Web Push: %s", plain)
}

// decryptWebPush opens an RFC 8291 aes128gcm Web Push body with the
// subscription's private key and auth secret.
func decryptWebPush(body []byte, ua *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, fmt.Errorf("body of %d bytes: no aes128gcm header", len(body))
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 {
		return nil, fmt.Errorf("key id of %d bytes; want the sender's 65-byte public key", idlen)
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("sender key: %w", err)
	}
	record := body[21+idlen:]
	if uint32(len(record)) > rs {
		return nil, fmt.Errorf("one record expected, body has %d bytes for record size %d", len(record), rs)
	}
	shared, err := ua.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	hm := func(key []byte, parts ...[]byte) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	// RFC 8291 §3.4: IKM from the ECDH secret and the auth secret.
	info := append(append([]byte("WebPush: info\x00"), ua.PublicKey().Bytes()...), asPub.Bytes()...)
	ikm := hm(hm(auth, shared), info, []byte{1})
	// RFC 8188 §2.2: content key and nonce.
	prk := hm(salt, ikm)
	cek := hm(prk, []byte("Content-Encoding: aes128gcm\x00"), []byte{1})[:16]
	nonce := hm(prk, []byte("Content-Encoding: nonce\x00"), []byte{1})[:12]
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, record, nil)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	// The last record ends with 0x02 and zero padding.
	i := bytes.LastIndexFunc(plain, func(r rune) bool { return r != 0 })
	if i < 0 || plain[i] != 2 {
		return nil, fmt.Errorf("no last-record delimiter")
	}
	return plain[:i], nil
}
