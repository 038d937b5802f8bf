// Package device keeps each user's push devices: their validation and their
// storage behind a statestore.Store. A device is where a push goes: a
// webhook URL, an FCM registration token or a Web Push subscription.
package device

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore"
)

// Platforms a device can be on.
const (
	Webhook = "webhook"
	FCM     = "fcm"
	WebPush = "webpush"
)

// Limits on what a client may register.
const (
	// MaxPerUser bounds the devices one user may register.
	MaxPerUser = 10
	// MaxURLLen bounds a webhook URL and a Web Push endpoint.
	MaxURLLen = 2048
	// MaxTokenLen bounds an FCM registration token.
	MaxTokenLen = 4096
)

// Subscription is a Web Push subscription as the browser's
// PushSubscription.toJSON() gives it.
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     Keys   `json:"keys"`
}

// Keys are a Web Push subscription's keys, base64url encoded.
type Keys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// Registration is the body of POST /api/v1/devices.
type Registration struct {
	Platform     string        `json:"platform"`
	Token        string        `json:"token,omitempty"`
	URL          string        `json:"url,omitempty"`
	Subscription *Subscription `json:"subscription,omitempty"`
}

// Device is one registered device.
type Device struct {
	ID           string        `json:"id"`
	UserID       string        `json:"user_id"`
	Platform     string        `json:"platform"`
	Token        string        `json:"token,omitempty"`
	URL          string        `json:"url,omitempty"`
	Subscription *Subscription `json:"subscription,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
}

// target is what makes two registrations the same device.
func (d Device) target() string {
	switch d.Platform {
	case FCM:
		return FCM + " " + d.Token
	case WebPush:
		return WebPush + " " + d.Subscription.Endpoint
	default:
		return d.Platform + " " + d.URL
	}
}

var fcmToken = regexp.MustCompile(`^[A-Za-z0-9_:.\-]+$`)

// Validate checks a registration's shape for its platform and returns the
// device it describes, with no id or owner yet.
func (r Registration) Validate() (Device, error) {
	d := Device{Platform: r.Platform}
	switch r.Platform {
	case Webhook:
		if r.Token != "" || r.Subscription != nil {
			return Device{}, apierror.Invalidf("invalid_device", "a webhook device has a url only")
		}
		if err := checkURL("url", r.URL, false); err != nil {
			return Device{}, err
		}
		d.URL = r.URL
	case FCM:
		if r.URL != "" || r.Subscription != nil {
			return Device{}, apierror.Invalidf("invalid_device", "an fcm device has a token only")
		}
		if r.Token == "" || len(r.Token) > MaxTokenLen || !fcmToken.MatchString(r.Token) {
			return Device{}, apierror.Invalidf("invalid_device", "token must be an FCM registration token of at most %d characters", MaxTokenLen)
		}
		d.Token = r.Token
	case WebPush:
		if r.URL != "" || r.Token != "" {
			return Device{}, apierror.Invalidf("invalid_device", "a webpush device has a subscription only")
		}
		if r.Subscription == nil {
			return Device{}, apierror.Invalidf("invalid_device", "subscription is required for webpush")
		}
		s := *r.Subscription
		if err := checkURL("subscription.endpoint", s.Endpoint, true); err != nil {
			return Device{}, err
		}
		if err := checkKey("subscription.keys.p256dh", s.Keys.P256dh, 65); err != nil {
			return Device{}, err
		}
		if err := checkKey("subscription.keys.auth", s.Keys.Auth, 16); err != nil {
			return Device{}, err
		}
		d.Subscription = &s
	default:
		return Device{}, apierror.Invalidf("invalid_platform", "platform must be webhook, fcm or webpush")
	}
	return d, nil
}

func checkURL(field, raw string, httpsOnly bool) error {
	if raw == "" || len(raw) > MaxURLLen {
		return apierror.Invalidf("invalid_device", "%s must be a URL of at most %d characters", field, MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return apierror.Invalidf("invalid_device", "%s must be an absolute URL without credentials", field)
	}
	if u.Scheme != "https" && (httpsOnly || u.Scheme != "http") {
		if httpsOnly {
			return apierror.Invalidf("invalid_device", "%s must be an https URL", field)
		}
		return apierror.Invalidf("invalid_device", "%s must be an http or https URL", field)
	}
	return nil
}

// checkKey checks that s is base64url (padded or not) of exactly n bytes;
// browsers send base64url, some libraries standard base64.
func checkKey(field, s string, n int) error {
	b, err := DecodeKey(s)
	if err != nil || len(b) != n {
		return apierror.Invalidf("invalid_device", "%s must be %d bytes in base64url", field, n)
	}
	if n == 65 && b[0] != 4 {
		return apierror.Invalidf("invalid_device", "%s must be an uncompressed P-256 point", field)
	}
	return nil
}

// DecodeKey decodes a Web Push key in base64url or standard base64, padded
// or not.
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// ErrNotFound is returned for a device the user does not have.
var ErrNotFound = apierror.New(apierror.NotFound, "device_not_found", "no such device")

// Registry stores devices, one record per user, guarded by its ETag, and
// keeps index listing exactly the users who have a device.
type Registry struct {
	store statestore.Store
	index *Index
	now   func() time.Time
}

// NewRegistry returns a Registry over store that keeps index.
func NewRegistry(store statestore.Store, index *Index) *Registry {
	return &Registry{store: store, index: index, now: time.Now}
}

type record struct {
	Devices []Device `json:"devices"`
}

func key(userID string) string { return "devices|" + userID }

func (g *Registry) read(ctx context.Context, userID string) (record, string, error) {
	it, err := g.store.Get(ctx, key(userID))
	if errors.Is(err, statestore.ErrNotFound) {
		return record{}, "", nil
	}
	if err != nil {
		return record{}, "", fmt.Errorf("read devices of %s: %w", userID, err)
	}
	var rec record
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return record{}, "", fmt.Errorf("decode devices of %s: %w", userID, err)
	}
	return rec, it.ETag, nil
}

// update applies change to userID's record with optimistic concurrency,
// retrying on a conflicting writer.
func (g *Registry) update(ctx context.Context, userID string, change func(*record) error) error {
	return statestore.Retry(ctx, updateAttempts, func() error {
		rec, etag, err := g.read(ctx, userID)
		if err != nil {
			return err
		}
		if err := change(&rec); err != nil {
			return err
		}
		op := statestore.Op{Key: key(userID), ETag: etag, IfAbsent: etag == ""}
		if len(rec.Devices) == 0 {
			op.Delete = true
			if etag == "" {
				return nil
			}
		} else if op.Value, err = json.Marshal(rec); err != nil {
			return fmt.Errorf("encode devices of %s: %w", userID, err)
		}
		if err := g.store.Write(ctx, op); err != nil {
			return fmt.Errorf("write devices of %s: %w", userID, err)
		}
		return nil
	})
}

// updateAttempts bounds update's re-reads after a conflicting writer.
const updateAttempts = 21

// Add registers a device for userID. Registering the same target again
// (same URL, token or endpoint) returns the existing device with its keys
// refreshed, so a client may register on every start. The user is in the
// index before Add returns; if the index cannot be written, Add fails
// with the device stored, and registering it again repairs the index.
func (g *Registry) Add(ctx context.Context, userID string, d Device) (Device, error) {
	var out Device
	err := g.update(ctx, userID, func(rec *record) error {
		for i, old := range rec.Devices {
			if old.target() == d.target() {
				rec.Devices[i].Subscription = d.Subscription
				out = rec.Devices[i]
				return nil
			}
		}
		if len(rec.Devices) >= MaxPerUser {
			return apierror.New(apierror.Conflict, "too_many_devices", "a user may register at most %d devices", MaxPerUser)
		}
		out = d
		out.ID, out.UserID, out.CreatedAt = newID(), userID, g.now().UTC()
		rec.Devices = append(rec.Devices, out)
		return nil
	})
	if err != nil {
		return Device{}, err
	}
	return out, g.Sync(ctx, userID)
}

// List returns userID's devices, oldest first. A user with devices whom
// the index lacks (registered before it existed) is indexed on the way.
func (g *Registry) List(ctx context.Context, userID string) ([]Device, error) {
	rec, _, err := g.read(ctx, userID)
	if err != nil {
		return nil, err
	}
	if len(rec.Devices) == 0 {
		return []Device{}, nil
	}
	if !g.index.Has(userID) {
		if err := g.Sync(ctx, userID); err != nil {
			return nil, err
		}
	}
	return rec.Devices, nil
}

// Remove deletes one of userID's devices; ErrNotFound when there is none
// with that id. Removing the last one takes the user out of the index.
func (g *Registry) Remove(ctx context.Context, userID, id string) error {
	err := g.update(ctx, userID, func(rec *record) error {
		for i, d := range rec.Devices {
			if d.ID == id {
				rec.Devices = append(rec.Devices[:i], rec.Devices[i+1:]...)
				return nil
			}
		}
		return ErrNotFound
	})
	if err != nil {
		return err
	}
	return g.Sync(ctx, userID)
}

// Sync brings userID's entry in the index in line with their device
// record. A user whose record has devices is listed. One without is
// taken out, and the record is read again after that: a registration
// that raced the removal either wrote its device before that second read
// (which lists the user again) or runs its own Sync after it (which
// does), so the index never ends without a user who has a device.
func (g *Registry) Sync(ctx context.Context, userID string) error {
	for i := 0; ; i++ {
		rec, _, err := g.read(ctx, userID)
		if err != nil {
			return err
		}
		if len(rec.Devices) > 0 {
			return g.index.add(ctx, userID)
		}
		if i > 0 {
			return nil
		}
		if err := g.index.remove(ctx, userID); err != nil {
			return err
		}
	}
}

// WithDevices returns which of userIDs have a device, from the index in
// memory (see Index.WithDevices).
func (g *Registry) WithDevices(ctx context.Context, userIDs []string) (map[string]bool, error) {
	return g.index.WithDevices(ctx, userIDs)
}

// ForUsers returns the devices of each of userIDs that has any, in one
// read.
func (g *Registry) ForUsers(ctx context.Context, userIDs []string) (map[string][]Device, error) {
	out := map[string][]Device{}
	if len(userIDs) == 0 {
		return out, nil
	}
	keys := make([]string, len(userIDs))
	for i, u := range userIDs {
		keys[i] = key(u)
	}
	items, err := g.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read devices of %d users: %w", len(userIDs), err)
	}
	for i, it := range items {
		if !it.Found() {
			continue
		}
		var rec record
		if err := json.Unmarshal(it.Value, &rec); err != nil {
			return nil, fmt.Errorf("decode devices of %s: %w", userIDs[i], err)
		}
		if len(rec.Devices) > 0 {
			out[userIDs[i]] = rec.Devices
		}
	}
	return out, nil
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "dev_" + hex.EncodeToString(b[:])
}
