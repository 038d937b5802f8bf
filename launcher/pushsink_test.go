package launcher

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A Web Push reaches the push service it names, body and Web Push headers
// as they are, and the push service's status comes back to the sender.
func TestPushSinkForwardsWebPush(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	var body []byte
	push := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, body = r.Clone(r.Context()), b
		mu.Unlock()
		w.WriteHeader(http.StatusGone) // "this subscription is gone"
	}))
	defer push.Close()
	var log bytes.Buffer
	sink, err := startPushSink(&safeWriter{w: &log}, push.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.stop()

	cipher := []byte{0xde, 0xad, 0xbe, 0xef}
	req, _ := http.NewRequest(http.MethodPost, sink.url+"/webpush", bytes.NewReader(cipher))
	req.Header.Set("X-Papo-Push-Target", push.URL+"/send/abc")
	req.Header.Set("Authorization", "vapid t=x, k=y")
	req.Header.Set("Content-Encoding", "aes128gcm")
	req.Header.Set("TTL", "60")
	req.Header.Set("Topic", "room1")
	req.Header.Set("X-Other", "stays")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Errorf("sink answered %d; want the push service's 410", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if got == nil {
		t.Fatal("nothing reached the push service")
	}
	if got.URL.Path != "/send/abc" || !bytes.Equal(body, cipher) || got.Header.Get("Authorization") != "vapid t=x, k=y" ||
		got.Header.Get("Content-Encoding") != "aes128gcm" || got.Header.Get("Ttl") != "60" || got.Header.Get("Topic") != "room1" || got.Header.Get("X-Other") != "" {
		t.Errorf("push service got %s %x %v; want the body and the Web Push headers alone", got.URL.Path, body, got.Header)
	}

	// Not https: refused, nothing sent.
	req, _ = http.NewRequest(http.MethodPost, sink.url+"/webpush", bytes.NewReader(cipher))
	req.Header.Set("X-Papo-Push-Target", "http://127.0.0.1:1/x")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain-http target: %d; want 400", resp.StatusCode)
	}
}

// The VAPID pair is made once, valid, private to the owner, and reused.
func TestVAPIDKeysAreMadeOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	k, err := loadVAPID(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := base64.RawURLEncoding.DecodeString(k.Public)
	if err != nil || len(pub) != 65 || pub[0] != 4 {
		t.Fatalf("public key %q: want a base64url uncompressed P-256 point", k.Public)
	}
	priv, err := base64.RawURLEncoding.DecodeString(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil || !bytes.Equal(pk.PublicKey().Bytes(), pub) {
		t.Fatalf("private key does not match the public one: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "vapid.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("vapid.json: %v mode %v; want 0600", err, fi.Mode())
	}
	again, err := loadVAPID(dir)
	if err != nil || again != k {
		t.Fatalf("second load %v %v; want the same pair", again, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vapid.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadVAPID(dir); err == nil || !strings.Contains(err.Error(), "not a VAPID key pair") {
		t.Fatalf("broken file: %v; want an error naming it", err)
	}
}

type safeWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *safeWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
