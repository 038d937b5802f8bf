package push_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/push"
)

// provider is a real HTTP server behind the binding that records the
// last request and answers with a set status.
type provider struct {
	srv *httptest.Server

	mu     sync.Mutex
	status int
	header http.Header
	path   string
	body   []byte
}

func newProvider(t *testing.T, status int, header http.Header) *provider {
	t.Helper()
	p := &provider{status: status}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.header, p.path, p.body = r.Header.Clone(), r.URL.Path, b
		p.mu.Unlock()
		for k, vs := range header {
			w.Header()[k] = vs
		}
		w.WriteHeader(p.status)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func note() push.Notification {
	title, body := push.Text("general", "public", "", 3, 0)
	return push.Notification{ID: "r1:5:d1", UserID: "bob", DeviceID: "d1", RoomID: "r1", RoomName: "general",
		RoomKind: "public", Count: 3, FirstSeq: 5, LastSeq: 7, Title: title, Body: body, SentAt: time.Now().UTC()}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		name, kind, sender string
		count, mentions    int
		want               string
	}{
		{"general", "public", "", 3, 0, "3 new messages in #general"},
		{"general", "public", "", 1, 0, "1 new message in #general"},
		{"general", "private", "", 2, 1, "2 new messages in #general (1 mention)"},
		{"", "dm", "alice", 2, 2, "2 new messages from alice"},
		{"", "dm", "", 1, 1, "1 new message in a direct message"},
		{"", "", "", 4, 0, "4 new messages"},
	} {
		if _, got := push.Text(tc.name, tc.kind, tc.sender, tc.count, tc.mentions); got != tc.want {
			t.Errorf("Text(%q, %q, %q, %d, %d) = %q, want %q", tc.name, tc.kind, tc.sender, tc.count, tc.mentions, got, tc.want)
		}
	}
}

func TestWebhookIsGenericJSONWithItsTarget(t *testing.T) {
	p := newProvider(t, http.StatusOK, nil)
	s := push.NewSender(push.NewHTTPBinding(p.srv.URL), push.Options{})
	d := device.Device{ID: "d1", Platform: device.Webhook, URL: "https://hooks.example/x"}
	if err := s.Send(context.Background(), d, note()); err != nil {
		t.Fatal(err)
	}
	if p.path != push.WebhookPath || p.header.Get(push.TargetHeader) != d.URL {
		t.Fatalf("path %q target %q", p.path, p.header.Get(push.TargetHeader))
	}
	var got map[string]any
	if err := json.Unmarshal(p.body, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"type": "papo.notification", "room_id": "r1", "count": 3.0,
		"body": "3 new messages in #general", "first_seq": 5.0, "last_seq": 7.0, "id": "r1:5:d1"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func TestFCMIsAnHTTPv1Message(t *testing.T) {
	p := newProvider(t, http.StatusOK, nil)
	s := push.NewSender(push.NewHTTPBinding(p.srv.URL), push.Options{FCMProject: "proj-1"})
	d := device.Device{ID: "d1", Platform: device.FCM, Token: "tok:APA91b-x"}
	if err := s.Send(context.Background(), d, note()); err != nil {
		t.Fatal(err)
	}
	if want := "/fcm/v1/projects/proj-1/messages:send"; p.path != want {
		t.Fatalf("path %q, want %q", p.path, want)
	}
	var got struct {
		Message struct {
			Token        string            `json:"token"`
			Notification map[string]string `json:"notification"`
			Data         map[string]string `json:"data"`
			Android      map[string]string `json:"android"`
		} `json:"message"`
	}
	if err := json.Unmarshal(p.body, &got); err != nil {
		t.Fatal(err)
	}
	m := got.Message
	if m.Token != d.Token || m.Notification["body"] != "3 new messages in #general" || m.Notification["title"] != "#general" ||
		m.Data["count"] != "3" || m.Data["room_id"] != "r1" || m.Android["collapse_key"] != "r1" {
		t.Fatalf("message = %s", p.body)
	}
}

func TestWebPushIsEncryptedForTheSubscriptionAndSignedWithVAPID(t *testing.T) {
	p := newProvider(t, http.StatusCreated, nil)
	vapidPriv, vapidPub, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	s := push.NewSender(push.NewHTTPBinding(p.srv.URL), push.Options{
		VAPIDPublicKey: vapidPub, VAPIDPrivateKey: vapidPriv, VAPIDSubject: "mailto:ops@papo.test",
	})
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	endpoint := "https://push.example/sub/abc"
	d := device.Device{ID: "d1", Platform: device.WebPush, Subscription: &device.Subscription{
		Endpoint: endpoint,
		Keys: device.Keys{
			P256dh: base64.RawURLEncoding.EncodeToString(ua.PublicKey().Bytes()),
			Auth:   base64.RawURLEncoding.EncodeToString(auth),
		},
	}}
	if err := s.Send(context.Background(), d, note()); err != nil {
		t.Fatal(err)
	}
	if p.path != push.WebPushPath || p.header.Get(push.TargetHeader) != endpoint {
		t.Fatalf("path %q target %q", p.path, p.header.Get(push.TargetHeader))
	}
	if p.header.Get("Content-Encoding") != "aes128gcm" || p.header.Get("TTL") == "" {
		t.Fatalf("headers %v", p.header)
	}
	if a := p.header.Get("Authorization"); !strings.HasPrefix(a, "vapid t=") || !strings.Contains(a, ", k="+vapidPub) {
		t.Fatalf("Authorization = %q", a)
	}
	plain := decryptRFC8291(t, ua, auth, p.body)
	var got map[string]any
	if err := json.Unmarshal(plain, &got); err != nil {
		t.Fatalf("decrypted %q: %v", plain, err)
	}
	if got["body"] != "3 new messages in #general" || got["room_id"] != "r1" {
		t.Fatalf("decrypted payload %s", plain)
	}
}

// decryptRFC8291 decrypts an aes128gcm Web Push body as the user agent
// holding ua and auth would (RFC 8291 section 3, RFC 8188).
func decryptRFC8291(t *testing.T, ua *ecdh.PrivateKey, auth, body []byte) []byte {
	t.Helper()
	if len(body) < 21 {
		t.Fatalf("body of %d bytes", len(body))
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	asPub, ct := body[21:21+idlen], body[21+idlen:]
	if rs < 18 || len(ct) > int(rs) {
		t.Fatalf("record size %d for %d bytes", rs, len(ct))
	}
	as, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := ua.ECDH(as)
	if err != nil {
		t.Fatal(err)
	}
	info := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPub)
	ikm, err := hkdf.Key(sha256.New, secret, auth, info, 32)
	if err != nil {
		t.Fatal(err)
	}
	cek, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	// Strip the padding: the last record ends with 0x02 then zeros.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 || plain[i] != 2 {
		t.Fatalf("bad padding delimiter")
	}
	return plain[:i]
}

func TestProviderStatuses(t *testing.T) {
	for _, tc := range []struct {
		status     int
		header     http.Header
		gone       bool
		retryable  bool
		retryAfter time.Duration
	}{
		{status: http.StatusGone, gone: true},
		{status: http.StatusNotFound, gone: true},
		{status: http.StatusServiceUnavailable, retryable: true},
		{status: http.StatusTooManyRequests, header: http.Header{"Retry-After": {"7"}}, retryable: true, retryAfter: 7 * time.Second},
		{status: http.StatusBadRequest},
	} {
		p := newProvider(t, tc.status, tc.header)
		s := push.NewSender(push.NewHTTPBinding(p.srv.URL), push.Options{})
		err := s.Send(context.Background(), device.Device{ID: "d", Platform: device.Webhook, URL: "https://x.example"}, note())
		if got := errors.Is(err, push.ErrGone); got != tc.gone {
			t.Errorf("%d: gone = %v, want %v (%v)", tc.status, got, tc.gone, err)
		}
		if got := push.Retryable(err); got != tc.retryable {
			t.Errorf("%d: retryable = %v, want %v", tc.status, got, tc.retryable)
		}
		var f *push.Failure
		if tc.retryAfter > 0 && (!errors.As(err, &f) || f.RetryAfter != tc.retryAfter) {
			t.Errorf("%d: retry after %v, want %v", tc.status, f, tc.retryAfter)
		}
	}
}

func TestAnUnreachableBindingIsRetryable(t *testing.T) {
	p := newProvider(t, http.StatusOK, nil)
	url := p.srv.URL
	p.srv.Close()
	s := push.NewSender(push.NewHTTPBinding(url), push.Options{})
	err := s.Send(context.Background(), device.Device{ID: "d", Platform: device.Webhook, URL: "https://x.example"}, note())
	if err == nil || !push.Retryable(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
}

func TestAGoneWebPushSubscription(t *testing.T) {
	p := newProvider(t, http.StatusGone, nil)
	vapidPriv, vapidPub, _ := webpush.GenerateVAPIDKeys()
	s := push.NewSender(push.NewHTTPBinding(p.srv.URL), push.Options{VAPIDPublicKey: vapidPub, VAPIDPrivateKey: vapidPriv})
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	d := device.Device{ID: "d1", Platform: device.WebPush, Subscription: &device.Subscription{
		Endpoint: "https://push.example/sub/gone",
		Keys: device.Keys{P256dh: base64.RawURLEncoding.EncodeToString(ua.PublicKey().Bytes()),
			Auth: base64.RawURLEncoding.EncodeToString(make([]byte, 16))},
	}}
	if err := s.Send(context.Background(), d, note()); !errors.Is(err, push.ErrGone) {
		t.Fatalf("err = %v, want ErrGone", err)
	}
}
