// Package push turns a notification into the request each platform
// expects — generic webhook JSON, an FCM HTTP v1 message, or an encrypted
// Web Push message (RFC 8291, VAPID) — and sends it through an output
// binding: the Dapr binding `push` in production, an HTTP client standing
// in for it in tests.
package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/papochat/papo/services/notification/internal/device"
)

// Notification is one coalesced push: what a user missed in one room.
type Notification struct {
	// ID identifies the push for the receiver's own deduplication:
	// room, first seq of the window, device.
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	RoomID   string `json:"room_id"`
	RoomName string `json:"room_name,omitempty"`
	RoomKind string `json:"room_kind,omitempty"`
	// Count is how many messages arrived in the window; Mentions how many
	// of them mention the user.
	Count    int   `json:"count"`
	Mentions int   `json:"mentions"`
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`
	// SenderName is the username of the window's last sender, when known.
	SenderName string    `json:"sender_name,omitempty"`
	Title      string    `json:"title"`
	Body       string    `json:"body"`
	SentAt     time.Time `json:"sent_at"`
}

// Text returns the title and body of a notification: "3 new messages in
// #general", "1 new message from alice".
func Text(roomName, roomKind, senderName string, count, mentions int) (title, body string) {
	what := "new message"
	if count != 1 {
		what = "new messages"
	}
	switch {
	case roomKind == "dm" && senderName != "":
		title = senderName
		body = fmt.Sprintf("%d %s from %s", count, what, senderName)
	case roomKind == "dm":
		title = "Direct message"
		body = fmt.Sprintf("%d %s in a direct message", count, what)
	case roomName != "":
		title = "#" + roomName
		body = fmt.Sprintf("%d %s in #%s", count, what, roomName)
	default:
		title = "papo"
		body = fmt.Sprintf("%d %s", count, what)
	}
	if mentions > 0 && roomKind != "dm" {
		if mentions == 1 {
			body += " (1 mention)"
		} else {
			body += fmt.Sprintf(" (%d mentions)", mentions)
		}
	}
	return title, body
}

// Request is one output binding invocation.
type Request struct {
	Operation string
	Data      []byte
	Metadata  map[string]string
}

// Response is what an output binding answered.
type Response struct {
	Data     []byte
	Metadata map[string]string
}

// Binding invokes an output binding. The Dapr binding bindings.http
// answers with the provider's status in Metadata["statusCode"].
type Binding interface {
	Invoke(ctx context.Context, req Request) (Response, error)
}

// TargetHeader carries a webhook URL or Web Push endpoint to the relay
// behind the binding, which has one fixed base URL.
const TargetHeader = "X-Papo-Push-Target"

// Paths under the binding's base URL, one per platform.
const (
	WebhookPath = "/webhook"
	WebPushPath = "/webpush"
)

// FCMPath is the FCM HTTP v1 send path for a project.
func FCMPath(project string) string { return "/fcm/v1/projects/" + project + "/messages:send" }

// ErrGone means the provider reports the device gone (HTTP 404 or 410):
// it must be removed, not retried.
var ErrGone = errors.New("push: device is gone")

// Failure is a push the provider refused for now (429, 5xx, or another
// status); Retryable says whether trying again may help.
type Failure struct {
	Status     int
	Retryable  bool
	RetryAfter time.Duration
}

func (f *Failure) Error() string {
	return fmt.Sprintf("push refused with status %d (retryable %v)", f.Status, f.Retryable)
}

// Retryable reports whether err is worth another attempt: a transport
// failure, or a Failure marked retryable.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrGone) {
		return false
	}
	var f *Failure
	if errors.As(err, &f) {
		return f.Retryable
	}
	return !errors.Is(err, errInvalid)
}

var errInvalid = errors.New("push: cannot build the request")

// Options configure a Sender.
type Options struct {
	// FCMProject is the Firebase project id in the FCM v1 path.
	FCMProject string
	// VAPID keys (base64url) and subject (mailto: or https: URL); webpush
	// devices need them.
	VAPIDPublicKey  string
	VAPIDPrivateKey string
	VAPIDSubject    string
	// TTL is how long a push service keeps an undelivered Web Push.
	TTL time.Duration
}

// Sender sends notifications to devices through a Binding.
type Sender struct {
	binding Binding
	opts    Options
}

// NewSender returns a Sender.
func NewSender(b Binding, opts Options) *Sender {
	if opts.TTL <= 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.FCMProject == "" {
		opts.FCMProject = "papo"
	}
	return &Sender{binding: b, opts: opts}
}

// WebPushEnabled reports whether VAPID keys are configured.
func (s *Sender) WebPushEnabled() bool {
	return s.opts.VAPIDPublicKey != "" && s.opts.VAPIDPrivateKey != ""
}

// VAPIDPublicKey is the applicationServerKey browsers subscribe with.
func (s *Sender) VAPIDPublicKey() string { return s.opts.VAPIDPublicKey }

// Send delivers n to d. It returns nil when the provider accepted it,
// ErrGone when the device is gone, a *Failure for other refusals, and
// the binding's error when the request did not get through.
func (s *Sender) Send(ctx context.Context, d device.Device, n Notification) error {
	switch d.Platform {
	case device.Webhook:
		body, err := json.Marshal(webhookBody{Type: "papo.notification", Notification: n})
		if err != nil {
			return fmt.Errorf("%w: %v", errInvalid, err)
		}
		return s.post(ctx, WebhookPath, body, map[string]string{TargetHeader: d.URL})
	case device.FCM:
		body, err := json.Marshal(fcmMessage(d.Token, n))
		if err != nil {
			return fmt.Errorf("%w: %v", errInvalid, err)
		}
		return s.post(ctx, FCMPath(s.opts.FCMProject), body, nil)
	case device.WebPush:
		return s.sendWebPush(ctx, d, n)
	default:
		return fmt.Errorf("%w: unknown platform %q", errInvalid, d.Platform)
	}
}

// post sends one request and classifies the provider's status. The
// binding is told not to turn a non-2xx status into an error, so the
// status reaches us: a 410 must remove the device at once rather than be
// retried by the sidecar's resiliency policy like an outage.
func (s *Sender) post(ctx context.Context, path string, body []byte, headers map[string]string) error {
	md := map[string]string{"path": path, "errorIfNot2XX": "false"}
	for k, v := range headers {
		md[k] = v
	}
	resp, err := s.binding.Invoke(ctx, Request{Operation: "post", Data: body, Metadata: md})
	if err != nil {
		return fmt.Errorf("invoke push binding: %w", err)
	}
	return classify(resp.Metadata)
}

func classify(md map[string]string) error {
	code, err := strconv.Atoi(md["statusCode"])
	if err != nil {
		// A binding that does not report a status and did not fail
		// delivered the request.
		return nil
	}
	switch {
	case code/100 == 2:
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return fmt.Errorf("%w (status %d)", ErrGone, code)
	case code == http.StatusTooManyRequests || code/100 == 5 || code == http.StatusRequestTimeout:
		f := &Failure{Status: code, Retryable: true}
		if secs, err := strconv.Atoi(strings.TrimSpace(header(md, "Retry-After"))); err == nil && secs > 0 {
			f.RetryAfter = time.Duration(secs) * time.Second
		}
		return f
	default:
		return &Failure{Status: code}
	}
}

// header finds a response header in binding metadata, whatever its case.
func header(md map[string]string, name string) string {
	for k, v := range md {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

type webhookBody struct {
	Type string `json:"type"`
	Notification
}

type fcmEnvelope struct {
	Message fcmMsg `json:"message"`
}

type fcmMsg struct {
	Token        string            `json:"token"`
	Notification fcmNotification   `json:"notification"`
	Data         map[string]string `json:"data"`
	Android      fcmAndroid        `json:"android"`
	APNS         fcmAPNS           `json:"apns"`
}

type fcmNotification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

type fcmAndroid struct {
	CollapseKey string `json:"collapse_key"`
	Priority    string `json:"priority"`
}

type fcmAPNS struct {
	Headers map[string]string `json:"headers"`
}

// fcmMessage is the FCM HTTP v1 message: a visible notification, the same
// facts as string data for the app, and a per-room collapse key so a newer
// push replaces an older one on the device.
func fcmMessage(token string, n Notification) fcmEnvelope {
	return fcmEnvelope{Message: fcmMsg{
		Token:        token,
		Notification: fcmNotification{Title: n.Title, Body: n.Body},
		Data: map[string]string{
			"id":        n.ID,
			"room_id":   n.RoomID,
			"count":     strconv.Itoa(n.Count),
			"mentions":  strconv.Itoa(n.Mentions),
			"first_seq": strconv.FormatInt(n.FirstSeq, 10),
			"last_seq":  strconv.FormatInt(n.LastSeq, 10),
		},
		Android: fcmAndroid{CollapseKey: n.RoomID, Priority: "high"},
		APNS:    fcmAPNS{Headers: map[string]string{"apns-collapse-id": n.RoomID}},
	}}
}
