package device_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/notification/internal/device"
)

func subscription(t *testing.T) *device.Subscription {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &device.Subscription{Endpoint: "https://push.example/abc", Keys: device.Keys{
		P256dh: base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		Auth:   base64.RawURLEncoding.EncodeToString(make([]byte, 16)),
	}}
}

func TestValidate(t *testing.T) {
	sub := subscription(t)
	bad := func(f func(s *device.Subscription)) *device.Subscription {
		c := *sub
		f(&c)
		return &c
	}
	for _, tc := range []struct {
		name string
		reg  device.Registration
		ok   bool
	}{
		{"webhook", device.Registration{Platform: "webhook", URL: "https://hooks.example/x"}, true},
		{"webhook over http", device.Registration{Platform: "webhook", URL: "http://127.0.0.1:9/x"}, true},
		{"webhook without url", device.Registration{Platform: "webhook"}, false},
		{"webhook relative url", device.Registration{Platform: "webhook", URL: "/x"}, false},
		{"webhook ftp url", device.Registration{Platform: "webhook", URL: "ftp://x.example/"}, false},
		{"webhook url with credentials", device.Registration{Platform: "webhook", URL: "https://u:p@x.example/"}, false},
		{"webhook url too long", device.Registration{Platform: "webhook", URL: "https://x.example/" + strings.Repeat("a", device.MaxURLLen)}, false},
		{"webhook with a token", device.Registration{Platform: "webhook", URL: "https://x.example", Token: "t"}, false},
		{"fcm", device.Registration{Platform: "fcm", Token: "dGVzdA:APA91bH-x_y.z"}, true},
		{"fcm without token", device.Registration{Platform: "fcm"}, false},
		{"fcm token with spaces", device.Registration{Platform: "fcm", Token: "a b"}, false},
		{"fcm token too long", device.Registration{Platform: "fcm", Token: strings.Repeat("a", device.MaxTokenLen+1)}, false},
		{"webpush", device.Registration{Platform: "webpush", Subscription: sub}, true},
		{"webpush without subscription", device.Registration{Platform: "webpush"}, false},
		{"webpush over http", device.Registration{Platform: "webpush", Subscription: bad(func(s *device.Subscription) { s.Endpoint = "http://push.example/a" })}, false},
		{"webpush short p256dh", device.Registration{Platform: "webpush", Subscription: bad(func(s *device.Subscription) { s.Keys.P256dh = "AAAA" })}, false},
		{"webpush bad auth", device.Registration{Platform: "webpush", Subscription: bad(func(s *device.Subscription) { s.Keys.Auth = "!!" })}, false},
		{"unknown platform", device.Registration{Platform: "apns", Token: "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.reg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && apierror.KindOf(err) != apierror.Invalid {
				t.Fatalf("kind %v, want Invalid", apierror.KindOf(err))
			}
		})
	}
}

func newRegistry(store statestore.Store) *device.Registry {
	return device.NewRegistry(store, device.NewIndex(store, device.IndexOptions{}))
}

func add(t *testing.T, g *device.Registry, user, url string) device.Device {
	t.Helper()
	d, err := device.Registration{Platform: "webhook", URL: url}.Validate()
	if err != nil {
		t.Fatal(err)
	}
	d, err = g.Add(context.Background(), user, d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	g := newRegistry(memstore.New())
	a := add(t, g, "bob", "https://x.example/1")
	b := add(t, g, "bob", "https://x.example/2")
	again := add(t, g, "bob", "https://x.example/1")
	if again.ID != a.ID {
		t.Errorf("registering the same URL again made a new device %s (was %s)", again.ID, a.ID)
	}
	add(t, g, "carol", "https://x.example/3")
	ds, err := g.List(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != a.ID || ds[1].ID != b.ID || ds[0].UserID != "bob" {
		t.Fatalf("bob's devices = %+v", ds)
	}
	if err := g.Remove(ctx, "carol", a.ID); !errors.Is(err, device.ErrNotFound) {
		t.Fatalf("carol removed bob's device: %v", err)
	}
	if err := g.Remove(ctx, "bob", a.ID); err != nil {
		t.Fatal(err)
	}
	m, err := g.ForUsers(ctx, []string{"bob", "carol", "dave"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m["bob"]) != 1 || m["bob"][0].ID != b.ID || len(m["carol"]) != 1 || len(m["dave"]) != 0 {
		t.Fatalf("ForUsers = %+v", m)
	}
	if err := g.Remove(ctx, "bob", b.ID); err != nil {
		t.Fatal(err)
	}
	if ds, _ := g.List(ctx, "bob"); len(ds) != 0 {
		t.Fatalf("bob has %d devices after removing all", len(ds))
	}
}

func TestAUserHasAtMostMaxPerUserDevices(t *testing.T) {
	g := newRegistry(memstore.New())
	for i := range device.MaxPerUser {
		add(t, g, "bob", fmt.Sprintf("https://x.example/%d", i))
	}
	d, _ := device.Registration{Platform: "webhook", URL: "https://x.example/over"}.Validate()
	_, err := g.Add(context.Background(), "bob", d)
	if apierror.CodeOf(err) != "too_many_devices" {
		t.Fatalf("err = %v, want too_many_devices", err)
	}
}

func TestConcurrentAddsKeepEveryDevice(t *testing.T) {
	g := newRegistry(memstore.New())
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			d, _ := device.Registration{Platform: "webhook", URL: fmt.Sprintf("https://x.example/%d", i)}.Validate()
			_, err := g.Add(context.Background(), "bob", d)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if ds, _ := g.List(context.Background(), "bob"); len(ds) != 8 {
		t.Fatalf("%d devices after 8 concurrent adds", len(ds))
	}
}
