package server_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
	"github.com/papochat/papo/services/notification/internal/server"
)

type fixture struct {
	t       *testing.T
	srv     *httptest.Server
	iss     *authntest.Issuer
	modes   *mode.Store
	mu      sync.Mutex
	batches []events.RoomEventBatch
	notices []events.DevicesChanged
	fail    error
}

func newFixture(t *testing.T, webPushKey string) *fixture {
	t.Helper()
	f := &fixture{t: t, iss: authntest.New()}
	store := memstore.New()
	f.modes = mode.NewStore(store)
	f.srv = httptest.NewServer(server.New(server.Deps{
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Verifier:   f.iss.Verifier(),
		Devices:    device.NewRegistry(store, device.NewIndex(store, device.IndexOptions{})),
		Modes:      f.modes,
		WebPushKey: webPushKey,
		Events: func(_ context.Context, b events.RoomEventBatch) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail != nil {
				return f.fail
			}
			f.batches = append(f.batches, b)
			return nil
		},
		DevicesChanged: func(_ context.Context, n events.DevicesChanged) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail != nil {
				return f.fail
			}
			f.notices = append(f.notices, n)
			return nil
		},
		Checks: map[string]httpapi.Check{},
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(method, path, user, body string) (int, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+f.iss.Token(user, "s-"+user, time.Minute))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func code(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// TestUnknownRoutesAnswerWithErrorBodies: a path or method the service
// does not serve gets the API's error body, like every other failure.
func TestUnknownRoutesAnswerWithErrorBodies(t *testing.T) {
	f := newFixture(t, "")
	if status, body := f.do("GET", "/api/v1/devices/nope/more", "bob", ""); status != http.StatusNotFound || code(body) != "not_found" {
		t.Fatalf("unknown path: %d %v", status, body)
	}
	if status, body := f.do("PATCH", "/api/v1/devices", "bob", ""); status != http.StatusMethodNotAllowed || code(body) != "method_not_allowed" {
		t.Fatalf("unknown method: %d %v", status, body)
	}
}

func TestDevicesAPI(t *testing.T) {
	f := newFixture(t, "")
	status, body := f.do("POST", "/api/v1/devices", "bob", `{"platform":"webhook","url":"https://hooks.example/b"}`)
	if status != http.StatusCreated {
		t.Fatalf("register: %d %v", status, body)
	}
	id := body["device"].(map[string]any)["id"].(string)
	if status, body = f.do("GET", "/api/v1/devices", "bob", ""); status != 200 || len(body["devices"].([]any)) != 1 {
		t.Fatalf("list: %d %v", status, body)
	}
	if status, body = f.do("GET", "/api/v1/devices", "carol", ""); status != 200 || len(body["devices"].([]any)) != 0 {
		t.Fatalf("carol sees %v", body)
	}
	if status, body = f.do("DELETE", "/api/v1/devices/"+id, "carol", ""); status != http.StatusNotFound || code(body) != "device_not_found" {
		t.Fatalf("carol deleting bob's device: %d %v", status, body)
	}
	if status, _ = f.do("DELETE", "/api/v1/devices/"+id, "bob", ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	if status, _ = f.do("DELETE", "/api/v1/devices/"+id, "bob", ""); status != http.StatusNotFound {
		t.Fatalf("delete again: %d", status)
	}
}

func TestDeviceRegistrationIsValidated(t *testing.T) {
	f := newFixture(t, "")
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	sub := `{"platform":"webpush","subscription":{"endpoint":"https://push.example/a","keys":{"p256dh":"` +
		base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()) + `","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}}`
	for _, tc := range []struct {
		name, user, body string
		status           int
		code             string
	}{
		{"no token", "", `{"platform":"webhook","url":"https://x.example"}`, 401, "missing_token"},
		{"bad json", "bob", `{`, 400, "invalid_json"},
		{"unknown platform", "bob", `{"platform":"pager"}`, 400, "invalid_platform"},
		{"webhook without url", "bob", `{"platform":"webhook"}`, 400, "invalid_device"},
		{"fcm without token", "bob", `{"platform":"fcm"}`, 400, "invalid_device"},
		{"webpush not configured", "bob", sub, 400, "webpush_unavailable"},
		{"too large", "bob", `{"platform":"fcm","token":"` + strings.Repeat("a", 9000) + `"}`, 413, "body_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := f.do("POST", "/api/v1/devices", tc.user, tc.body)
			if status != tc.status || code(body) != tc.code {
				t.Fatalf("got %d %q, want %d %q", status, code(body), tc.status, tc.code)
			}
		})
	}
	g := newFixture(t, "BPUBLICKEY")
	if status, body := g.do("POST", "/api/v1/devices", "bob", sub); status != http.StatusCreated {
		t.Fatalf("webpush with VAPID configured: %d %v", status, body)
	}
	if status, body := g.do("GET", "/api/v1/devices/webpush-key", "bob", ""); status != 200 || body["public_key"] != "BPUBLICKEY" {
		t.Fatalf("webpush key: %d %v", status, body)
	}
}

func TestRoomModes(t *testing.T) {
	f := newFixture(t, "")
	status, body := f.do("PUT", "/api/v1/rooms/r1/notifications", "bob", `{"mode":"mentions"}`)
	if status != 200 || body["mode"] != "mentions" || body["room_id"] != "r1" {
		t.Fatalf("set: %d %v", status, body)
	}
	if m, _ := f.modes.Get(context.Background(), "bob", "r1"); m != mode.Mentions {
		t.Fatalf("stored mode %q", m)
	}
	if status, body = f.do("PUT", "/api/v1/rooms/r1/notifications", "bob", `{"mode":"loud"}`); status != 400 || code(body) != "invalid_mode" {
		t.Fatalf("bad mode: %d %v", status, body)
	}
	if status, _ = f.do("PUT", "/api/v1/rooms/r1/notifications", "", `{"mode":"none"}`); status != 401 {
		t.Fatalf("without token: %d", status)
	}
	if status, body = f.do("PUT", "/api/v1/rooms/"+strings.Repeat("r", 200)+"/notifications", "bob", `{"mode":"none"}`); status != 400 {
		t.Fatalf("long room id: %d %v", status, body)
	}
}

func TestTheSubscriptionsAndTheirDeliveries(t *testing.T) {
	f := newFixture(t, "")
	resp, err := http.Get(f.srv.URL + "/dapr/subscribe")
	if err != nil {
		t.Fatal(err)
	}
	var subs []map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&subs)
	resp.Body.Close()
	if len(subs) != 2 || subs[0]["pubsubname"] != events.PubSub || subs[0]["topic"] != events.TopicRoomEvents ||
		subs[0]["route"] != server.RoomEventsRoute || subs[0]["deadLetterTopic"] != events.TopicNotificationsDeadLetter ||
		subs[1]["pubsubname"] != events.Fanout || subs[1]["topic"] != events.TopicDevicesChanged || subs[1]["route"] != server.DevicesChangedRoute {
		t.Fatalf("subscriptions = %v", subs)
	}
	deliver := func(route, body string) string {
		resp, err := http.Post(f.srv.URL+route, "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out["status"]
	}
	for _, tc := range []struct {
		name, route, body, want string
	}{
		{"a batch of one room", server.RoomEventsRoute, `{"id":"1","data":{"room_id":"r1","events":[{"room_id":"r1","seq":1,"type":"message","sender_id":"a","text":"hi"}]}}`, "SUCCESS"},
		{"base64", server.RoomEventsRoute, `{"id":"2","data_base64":"` + base64.StdEncoding.EncodeToString([]byte(`{"room_id":"r2"}`)) + `"}`, "SUCCESS"},
		{"a batch of several rooms", server.RoomEventsRoute, `{"id":"3","data":{"events":[{"room_id":"r3","seq":1,"type":"message"},{"room_id":"r4","seq":9,"type":"message"}]}}`, "SUCCESS"},
		{"a batch that is no object", server.RoomEventsRoute, `{"id":"4","data":[1,2]}`, "DROP"},
		{"not json", server.RoomEventsRoute, `not json`, "DROP"},
		{"a notice", server.DevicesChangedRoute, `{"id":"5","data":{"user_id":"bob","shard":3,"version":2}}`, "SUCCESS"},
		{"a notice without user", server.DevicesChangedRoute, `{"id":"6","data":{"shard":3,"version":2}}`, "DROP"},
		{"a notice for no shard", server.DevicesChangedRoute, `{"id":"7","data":{"user_id":"bob","shard":64,"version":2}}`, "DROP"},
	} {
		if got := deliver(tc.route, tc.body); got != tc.want {
			t.Errorf("%s: status %q, want %q", tc.name, got, tc.want)
		}
	}
	f.mu.Lock()
	f.fail = errors.New("store down")
	f.mu.Unlock()
	if s := deliver(server.RoomEventsRoute, `{"id":"8","data":{"room_id":"r1"}}`); s != "RETRY" {
		t.Fatalf("failing handler: status %q, want RETRY", s)
	}
	if s := deliver(server.DevicesChangedRoute, `{"id":"9","data":{"user_id":"bob","shard":3,"version":2}}`); s != "RETRY" {
		t.Fatalf("failing notice handler: status %q, want RETRY", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 3 || f.batches[0].Events[0].Text != "hi" || f.batches[1].RoomID != "r2" || f.batches[2].Events[1].RoomID != "r4" {
		t.Fatalf("batches = %+v", f.batches)
	}
	if len(f.notices) != 1 || f.notices[0] != (events.DevicesChanged{UserID: "bob", Shard: 3, Version: 2}) {
		t.Fatalf("notices = %+v", f.notices)
	}
}
