package launcher

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pushSink stands in for a push relay in local runs. A Web Push (path
// /webpush) is sent on to the browser's push service named in
// X-Papo-Push-Target, as it is (already encrypted and VAPID-signed by the
// notification service), and the push service's status comes back: a
// browser subscribed on `make run` gets real pushes. Every other push is
// answered 200 and printed, so a developer sees what would have been
// pushed.
type pushSink struct {
	srv *http.Server
	url string
}

// webPushHeaders are the headers of a Web Push request (RFC 8030, 8291,
// 8292) passed on to the push service.
var webPushHeaders = []string{"Authorization", "Content-Encoding", "Ttl", "Topic", "Urgency", "Crypto-Key", "Encryption"}

const maxPushBody = 8 << 10 // Web Push payloads are at most 4 KiB

func startPushSink(log io.Writer, client *http.Client) (*pushSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start push sink: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(io.LimitReader(r.Body, maxPushBody))
			if r.URL.Path == "/webpush" {
				status := forwardWebPush(r, b, client)
				fmt.Fprintf(log, "%-12s | %s %s → %s: %d\n", "push-sink", r.Method, r.URL.Path, r.Header.Get("X-Papo-Push-Target"), status)
				w.WriteHeader(status)
				return
			}
			fmt.Fprintf(log, "%-12s | %s %s %s\n", "push-sink", r.Method, r.URL.Path, strings.TrimSpace(string(b)))
			w.WriteHeader(http.StatusOK)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return &pushSink{srv: srv, url: "http://" + ln.Addr().String()}, nil
}

// forwardWebPush sends one Web Push on to its push service and answers
// the status to give the notification service: the push service's, or
// 502 when it cannot be reached (the service retries 5xx).
func forwardWebPush(r *http.Request, body []byte, client *http.Client) int {
	target, err := url.Parse(r.Header.Get("X-Papo-Push-Target"))
	if err != nil || target.Scheme != "https" || target.Host == "" {
		return http.StatusBadRequest // the service validated it; not a push endpoint
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return http.StatusBadRequest
	}
	for _, h := range webPushHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return http.StatusBadGateway
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode
}

func (p *pushSink) stop() { _ = p.srv.Close() }

// vapidKeys are the notification service's Web Push keys in the form it
// reads them: base64url (no padding) of the P-256 private scalar and of
// the uncompressed public point.
type vapidKeys struct {
	Public  string `json:"public_key"`
	Private string `json:"private_key"`
}

// loadVAPID reads <dataDir>/vapid.json, or makes a key pair and writes it
// there (owner-only), so browsers' subscriptions survive restarts.
func loadVAPID(dataDir string) (vapidKeys, error) {
	file := filepath.Join(dataDir, "vapid.json")
	var k vapidKeys
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &k); err != nil || k.Public == "" || k.Private == "" {
			return vapidKeys{}, fmt.Errorf("%s is not a VAPID key pair (delete it to make a new one): %v", file, err)
		}
		return k, nil
	case !errors.Is(err, os.ErrNotExist):
		return vapidKeys{}, fmt.Errorf("read VAPID keys: %w", err)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("make VAPID keys: %w", err)
	}
	k = vapidKeys{
		Public:  base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()),
		Private: base64.RawURLEncoding.EncodeToString(priv.Bytes()),
	}
	b, _ = json.Marshal(k)
	if err := os.WriteFile(file, append(b, '\n'), 0o600); err != nil {
		return vapidKeys{}, fmt.Errorf("write VAPID keys: %w", err)
	}
	return k, nil
}
