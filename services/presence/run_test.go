package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
)

func TestRunServesHealthBeforeTheSidecarAndStops(t *testing.T) {
	t.Parallel()
	base, stop := servicetest.Start(t, run, nil)
	if got := servicetest.Status(t, http.MethodGet, base+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", got)
	}
	for _, route := range []struct{ method, path string }{
		{"POST", "/internal/v1/presence/connect"}, {"GET", "/internal/v1/presence"}, {"GET", "/api/v1/presence"},
	} {
		servicetest.RequireAppToken(t, base, route.method, route.path)
	}
	stop()
}

func TestConfigRefusesBadValues(t *testing.T) {
	t.Parallel()
	for key, value := range map[string]string{
		"APP_PORT":                "http",
		"PRESENCE_GRACE":          "-1s",
		"PRESENCE_LEASE_TTL":      "1s",
		"PRESENCE_SWEEP_INTERVAL": "1ms",
		"LOG_LEVEL":               "loud",
	} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			if _, err := service.Load(servicetest.Env(map[string]string{key: value}), defaults()); err == nil {
				t.Errorf("%s=%s accepted", key, value)
			}
		})
	}
	cfg, err := service.Load(servicetest.Env(nil), defaults())
	if err != nil || cfg.Grace != 5*time.Second || cfg.LeaseTTL != 20*time.Second {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
}
