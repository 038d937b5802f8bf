package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
)

func TestRunServesHealthAndStops(t *testing.T) {
	t.Parallel()
	base, stop := servicetest.Start(t, run, nil)
	if got := servicetest.Status(t, http.MethodGet, base+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a sidecar = %d, want 503", got)
	}
	// Only its sidecar reaches notification: deliveries and the
	// subscription list need the app API token like the API does.
	for _, route := range []struct{ method, path string }{
		{"GET", "/dapr/subscribe"}, {"POST", "/events/room-events"}, {"GET", "/api/v1/devices"},
	} {
		servicetest.RequireAppToken(t, base, route.method, route.path)
	}
	stop()
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"defaults", map[string]string{}, true},
		{"window", map[string]string{"NOTIFICATION_WINDOW": "2s"}, true},
		{"malformed window", map[string]string{"NOTIFICATION_WINDOW": "soon"}, false},
		{"window too short", map[string]string{"NOTIFICATION_WINDOW": "1ms"}, false},
		{"dedupe shorter than window", map[string]string{"NOTIFICATION_WINDOW": "10m", "NOTIFICATION_DEDUPE_TTL": "1m"}, false},
		{"one VAPID key", map[string]string{"NOTIFICATION_VAPID_PUBLIC_KEY": "x"}, false},
		{"attempts", map[string]string{"NOTIFICATION_PUSH_ATTEMPTS": "0"}, false},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, false},
		{"device refresh", map[string]string{"NOTIFICATION_DEVICE_REFRESH": "10s"}, true},
		{"device refresh too often", map[string]string{"NOTIFICATION_DEVICE_REFRESH": "10ms"}, false},
		{"no device fallback", map[string]string{"NOTIFICATION_DEVICE_FALLBACK": "false"}, true},
		{"room ttl too long", map[string]string{"NOTIFICATION_ROOM_TTL": "1h"}, false},
		{"no room cache", map[string]string{"NOTIFICATION_ROOM_CACHE": "0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := service.Load(servicetest.Env(tc.env), defaults())
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if tc.name == "defaults" && cfg.Window != time.Minute {
				t.Fatalf("default window %v", cfg.Window)
			}
		})
	}
}
