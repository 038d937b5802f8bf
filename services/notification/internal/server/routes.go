// Package server is the notification service's HTTP surface: the public
// devices and room-mode routes (behind the gateway, each verifying the
// bearer token again), the Dapr subscriptions to room.events and to the
// replicas' devices.changed notices, and health.
package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"

	"github.com/go-chi/chi/v5"
	gojson "github.com/goccy/go-json"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
)

// RoomEventsRoute is where the sidecar delivers room.events.
const RoomEventsRoute = "/events/room-events"

// DeadLetterTopic receives room event batches that failed every retry
// and pushes that could not be delivered.
const DeadLetterTopic = events.TopicNotificationsDeadLetter

// DevicesChangedRoute is where the sidecar delivers devices.changed.
const DevicesChangedRoute = "/events/devices-changed"

// Handler consumes one room event batch; an error asks for a redelivery.
type Handler func(ctx context.Context, b events.RoomEventBatch) error

// DevicesChangedHandler applies another replica's notice that the device
// index changed; an error asks for a redelivery.
type DevicesChangedHandler func(ctx context.Context, n events.DevicesChanged) error

// Deps are what the server needs.
type Deps struct {
	Log      *slog.Logger
	Verifier authn.TokenVerifier
	Devices  *device.Registry
	Modes    *mode.Store
	// WebPushKey is the VAPID public key; empty disables webpush devices.
	WebPushKey     string
	Events         Handler
	DevicesChanged DevicesChangedHandler
	Checks         map[string]httpapi.Check
}

// New returns the service's whole HTTP API.
func New(d Deps) http.Handler {
	r := chi.NewRouter()
	r.Use(httpapi.RequestIDs, httpapi.Recover(d.Log), httpapi.AccessLog(d.Log))
	r.NotFound(httpapi.NotFound)
	r.MethodNotAllowed(httpapi.MethodNotAllowed)
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", httpapi.Readyz(d.Checks))

	h := handlers{d}
	handle := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(d.Log, f) }
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(authn.Middleware(d.Verifier, func(w http.ResponseWriter, r *http.Request, err error) {
			httpapi.Error(w, r, d.Log, err)
		}))
		r.Method(http.MethodPost, "/devices", handle(h.addDevice))
		r.Method(http.MethodGet, "/devices", handle(h.listDevices))
		r.Method(http.MethodGet, "/devices/webpush-key", handle(h.webPushKey))
		r.Method(http.MethodDelete, "/devices/{id}", handle(h.removeDevice))
		r.Method(http.MethodPut, "/rooms/{id}/notifications", handle(h.setMode))
	})

	// Dapr's programmatic subscriptions: room events on the
	// competing-consumer component pubsub, so the replicas share them;
	// device index notices on the fan-out component, so every replica
	// gets each.
	r.Get("/dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Encode(w, http.StatusOK, []subscription{{
			PubsubName: events.PubSub, Topic: events.TopicRoomEvents, Route: RoomEventsRoute,
			DeadLetterTopic: DeadLetterTopic,
		}, {
			PubsubName: events.Fanout, Topic: events.TopicDevicesChanged, Route: DevicesChangedRoute,
		}})
	})
	r.Post(RoomEventsRoute, h.roomEvents)
	r.Post(DevicesChangedRoute, h.devicesChanged)
	return r
}

type subscription struct {
	PubsubName      string `json:"pubsubname"`
	Topic           string `json:"topic"`
	Route           string `json:"route"`
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
}

type handlers struct{ Deps }

func userID(r *http.Request) string {
	c, _ := authn.FromContext(r.Context())
	return c.UserID
}

// maxDeviceBody bounds a device registration (a subscription with a long
// endpoint and an FCM token fit well within it).
const maxDeviceBody = 8 << 10

// DeviceResponse answers POST /api/v1/devices.
type DeviceResponse struct {
	Device device.Device `json:"device"`
}

// DevicesResponse answers GET /api/v1/devices.
type DevicesResponse struct {
	Devices []device.Device `json:"devices"`
}

func (h handlers) addDevice(w http.ResponseWriter, r *http.Request) error {
	var reg device.Registration
	if err := httpapi.Decode(w, r, maxDeviceBody, &reg); err != nil {
		return err
	}
	d, err := reg.Validate()
	if err != nil {
		return err
	}
	if d.Platform == device.WebPush && h.WebPushKey == "" {
		return apierror.Invalidf("webpush_unavailable", "web push is not configured on this server")
	}
	d, err = h.Devices.Add(r.Context(), userID(r), d)
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusCreated, DeviceResponse{Device: d})
	return nil
}

func (h handlers) listDevices(w http.ResponseWriter, r *http.Request) error {
	ds, err := h.Devices.List(r.Context(), userID(r))
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, DevicesResponse{Devices: ds})
	return nil
}

func (h handlers) removeDevice(w http.ResponseWriter, r *http.Request) error {
	if err := h.Devices.Remove(r.Context(), userID(r), chi.URLParam(r, "id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h handlers) webPushKey(w http.ResponseWriter, r *http.Request) error {
	if h.WebPushKey == "" {
		return apierror.New(apierror.NotFound, "webpush_unavailable", "web push is not configured on this server")
	}
	httpapi.Encode(w, http.StatusOK, map[string]string{"public_key": h.WebPushKey})
	return nil
}

// ModeRequest is the body of PUT /api/v1/rooms/{id}/notifications.
type ModeRequest struct {
	Mode string `json:"mode"`
}

// ModeResponse answers it.
type ModeResponse struct {
	RoomID string `json:"room_id"`
	Mode   string `json:"mode"`
}

var validRoomID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func (h handlers) setMode(w http.ResponseWriter, r *http.Request) error {
	roomID := chi.URLParam(r, "id")
	if !validRoomID.MatchString(roomID) {
		return apierror.Invalidf("invalid_room_id", "room id is malformed")
	}
	var req ModeRequest
	if err := httpapi.Decode(w, r, 1<<10, &req); err != nil {
		return err
	}
	if err := h.Modes.Set(r.Context(), userID(r), roomID, req.Mode); err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, ModeResponse{RoomID: roomID, Mode: req.Mode})
	return nil
}

// cloudEvent is the part of a Dapr delivery we read.
type cloudEvent struct {
	ID         string          `json:"id"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

// Dapr's answers to a delivery.
const (
	statusSuccess = "SUCCESS"
	statusRetry   = "RETRY"
	statusDrop    = "DROP"
)

// deliveryData returns the payload of a Dapr delivery, or false when it
// is malformed (and answers DROP: redelivering cannot fix it).
func (h handlers) deliveryData(w http.ResponseWriter, r *http.Request, answer func(string)) ([]byte, string, bool) {
	// Deliveries come from the sidecar (the app token guards the route)
	// with payloads papo's services wrote: read once, decoded with go-json
	// (a room event batch carries every text of a commit round).
	var ce cloudEvent
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err == nil {
		err = gojson.Unmarshal(body, &ce)
	}
	if err != nil {
		h.Log.WarnContext(r.Context(), "malformed delivery", "err", err)
		answer(statusDrop)
		return nil, "", false
	}
	data := []byte(ce.Data)
	switch {
	case ce.DataBase64 != "":
		b, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		if err != nil {
			h.Log.WarnContext(r.Context(), "malformed delivery", "event_id", ce.ID, "err", err)
			answer(statusDrop)
			return nil, "", false
		}
		data = b
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err == nil {
			data = []byte(s)
		}
	}
	return data, ce.ID, true
}

func answerer(w http.ResponseWriter) func(string) {
	return func(status string) { httpapi.Encode(w, http.StatusOK, map[string]string{"status": status}) }
}

// roomEvents consumes one room.events delivery: a batch of one room or
// several. A malformed payload is dropped (redelivering cannot fix it); a
// failed decision is retried by the sidecar with backoff and
// dead-lettered after the last retry, while the stream goes on with other
// events.
func (h handlers) roomEvents(w http.ResponseWriter, r *http.Request) {
	answer := answerer(w)
	data, id, ok := h.deliveryData(w, r, answer)
	if !ok {
		return
	}
	var batch events.RoomEventBatch
	if err := gojson.Unmarshal(data, &batch); err != nil {
		h.Log.WarnContext(r.Context(), "malformed room event batch", "event_id", id, "err", err)
		answer(statusDrop)
		return
	}
	if err := h.Events(r.Context(), batch); err != nil {
		h.Log.WarnContext(r.Context(), "room events: will retry", "event_id", id, "room_id", batch.RoomID, "err", err)
		answer(statusRetry)
		return
	}
	answer(statusSuccess)
}

// devicesChanged consumes one devices.changed notice.
func (h handlers) devicesChanged(w http.ResponseWriter, r *http.Request) {
	answer := answerer(w)
	data, id, ok := h.deliveryData(w, r, answer)
	if !ok {
		return
	}
	var n events.DevicesChanged
	if err := json.Unmarshal(data, &n); err != nil || n.UserID == "" || n.Shard < 0 || n.Shard >= device.IndexShards {
		h.Log.WarnContext(r.Context(), "malformed devices.changed notice", "event_id", id, "err", err)
		answer(statusDrop)
		return
	}
	if err := h.DevicesChanged(r.Context(), n); err != nil {
		h.Log.WarnContext(r.Context(), "devices.changed: will retry", "event_id", id, "user_id", n.UserID, "err", err)
		answer(statusRetry)
		return
	}
	answer(statusSuccess)
}
