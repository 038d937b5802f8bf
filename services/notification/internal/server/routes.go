// Package server is the notification service's HTTP surface: the public
// devices and room-mode routes (behind the gateway, each verifying the
// bearer token again), the Dapr subscriptions to room.events and to the
// replicas' devices.changed notices, and health.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
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
	// gets each. A failed decision is retried by the sidecar with backoff
	// and dead-lettered after the last retry, while the stream goes on
	// with other events (pubsub.Outcome).
	pubsub.Mount(r, d.Log,
		pubsub.Subscribe(events.PubSub, events.TopicRoomEvents, RoomEventsRoute, pubsub.Handler[events.RoomEventBatch](d.Events),
			pubsub.WithDeadLetter(DeadLetterTopic)),
		pubsub.Subscribe(events.Fanout, events.TopicDevicesChanged, DevicesChangedRoute, d.devicesChanged))
	return r
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

func (h handlers) setMode(w http.ResponseWriter, r *http.Request) error {
	roomID := chi.URLParam(r, "id")
	if err := validate.RoomID(roomID); err != nil {
		return err
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

// devicesChanged checks one devices.changed notice and applies it.
func (d Deps) devicesChanged(ctx context.Context, n events.DevicesChanged) error {
	if n.UserID == "" || n.Shard < 0 || n.Shard >= device.IndexShards {
		return pubsub.Malformed(fmt.Errorf("devices.changed notice for user %q, shard %d", n.UserID, n.Shard))
	}
	return d.DevicesChanged(ctx, n)
}
