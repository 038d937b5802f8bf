package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/papochat/papo/services/notification/internal/device"
)

// webPushPayload is the clear text a service worker decrypts.
type webPushPayload struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Notification
}

// sendWebPush encrypts n for the subscription (RFC 8291 aes128gcm) and
// signs a VAPID header with webpush-go, then hands the request it built to
// the binding instead of sending it directly: every push leaves through
// the `push` binding.
func (s *Sender) sendWebPush(ctx context.Context, d device.Device, n Notification) error {
	if !s.WebPushEnabled() {
		return fmt.Errorf("%w: VAPID keys are not configured", errInvalid)
	}
	if d.Subscription == nil {
		return fmt.Errorf("%w: webpush device without subscription", errInvalid)
	}
	msg, err := json.Marshal(webPushPayload{Title: n.Title, Body: n.Body, Notification: n})
	if err != nil {
		return fmt.Errorf("%w: %v", errInvalid, err)
	}
	via := &bindingClient{ctx: ctx, s: s}
	resp, err := webpush.SendNotificationWithContext(ctx, msg, &webpush.Subscription{
		Endpoint: d.Subscription.Endpoint,
		Keys:     webpush.Keys{Auth: d.Subscription.Keys.Auth, P256dh: d.Subscription.Keys.P256dh},
	}, &webpush.Options{
		HTTPClient:      via,
		Subscriber:      s.opts.VAPIDSubject,
		Topic:           topic(n.RoomID),
		TTL:             int(s.opts.TTL.Seconds()),
		Urgency:         webpush.UrgencyNormal,
		VAPIDPublicKey:  s.opts.VAPIDPublicKey,
		VAPIDPrivateKey: s.opts.VAPIDPrivateKey,
	})
	if err != nil {
		if via.err != nil {
			return via.err
		}
		return fmt.Errorf("%w: web push: %v", errInvalid, err)
	}
	resp.Body.Close()
	return via.result
}

// topic is a Web Push Topic header (at most 32 base64url characters) so a
// newer push for a room replaces an undelivered older one.
func topic(roomID string) string {
	out := make([]byte, 0, 32)
	for i := 0; i < len(roomID) && len(out) < 32; i++ {
		c := roomID[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			out = append(out, c)
		}
	}
	return string(out)
}

// bindingClient is the webpush.HTTPClient that sends the prepared request
// through the binding, carrying the endpoint in TargetHeader and the
// request's headers (Authorization, Content-Encoding, TTL, …) as binding
// metadata, which bindings.http turns back into headers.
type bindingClient struct {
	ctx    context.Context
	s      *Sender
	err    error
	result error
}

func (c *bindingClient) Do(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		c.err = fmt.Errorf("%w: read web push body: %v", errInvalid, err)
		return nil, c.err
	}
	headers := map[string]string{TargetHeader: req.URL.String()}
	for k := range req.Header {
		headers[http.CanonicalHeaderKey(k)] = req.Header.Get(k)
	}
	c.result = c.s.post(c.ctx, WebPushPath, body, headers)
	if c.result != nil && !isProviderAnswer(c.result) {
		c.err = c.result
		return nil, c.err
	}
	status := http.StatusCreated
	var f *Failure
	if errors.As(c.result, &f) {
		status = f.Status
	} else if errors.Is(c.result, ErrGone) {
		status = http.StatusGone
	}
	return &http.Response{
		StatusCode: status,
		Status:     strconv.Itoa(status),
		Body:       io.NopCloser(bytes.NewReader(nil)),
		Header:     http.Header{},
		Request:    req,
	}, nil
}

// isProviderAnswer reports whether err is the provider's answer rather
// than a failure to reach it.
func isProviderAnswer(err error) bool {
	var f *Failure
	return errors.As(err, &f) || errors.Is(err, ErrGone)
}
