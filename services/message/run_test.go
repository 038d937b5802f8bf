package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
)

// TestRunServesHealthAndTheSubscriptionAndStops runs the service without a
// sidecar: it must listen at once, list its subscription for daprd, report
// not ready, and stop cleanly when its context ends.
func TestRunServesHealthAndTheSubscriptionAndStops(t *testing.T) {
	t.Parallel()
	base, stop := servicetest.Start(t, run, nil)
	req, _ := http.NewRequest(http.MethodGet, base+"/dapr/subscribe", nil)
	req.Header = servicetest.WithAppToken()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var subs []struct{ PubsubName, Topic, Route string }
	if err := json.NewDecoder(resp.Body).Decode(&subs); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(subs) != 1 || subs[0].PubsubName != events.PubSub || subs[0].Topic != events.TopicSubmitted || subs[0].Route == "" {
		t.Fatalf("subscriptions = %+v, want %s/%s", subs, events.PubSub, events.TopicSubmitted)
	}
	if got := servicetest.Status(t, http.MethodGet, base+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("readyz without a sidecar: %d, want 503", got)
	}
	if got := servicetest.StatusWith(t, http.MethodGet, base+"/api/v1/rooms", servicetest.WithAppToken()); got != http.StatusUnauthorized {
		t.Fatalf("rooms without a bearer token: %d, want 401", got)
	}
	// Only its sidecar reaches message: the internal routes, the delivery
	// of messages.submitted and the subscription list need the app token.
	for _, route := range []struct{ method, path string }{
		{"GET", "/internal/v1/rooms/r1/members"}, {"GET", "/internal/v1/users/u1/rooms"},
		{"POST", "/events/submitted"}, {"GET", "/dapr/subscribe"}, {"GET", "/api/v1/rooms"},
	} {
		servicetest.RequireAppToken(t, base, route.method, route.path)
	}
	stop()
}

func TestConfigRefusesBadValues(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"APP_PORT": "eighty"},
		{"DAPR_GRPC_PORT": "70000"},
		{"LOG_LEVEL": "loud"},
		{"AUTH_LEEWAY": "soon"},
		{"MESSAGE_ROUND_INTERVAL": "-1ms"},
		{"MESSAGE_ROUND_INTERVAL": "2s"},
	} {
		t.Run(fmt.Sprint(env), func(t *testing.T) {
			t.Parallel()
			if _, err := service.Load(servicetest.Env(env), defaults()); err == nil {
				t.Errorf("config %v accepted", env)
			}
		})
	}
	cfg, err := service.Load(servicetest.Env(nil), defaults())
	if err != nil || cfg.Port != "8083" || cfg.StateStore != "messagestore" || cfg.Host != "127.0.0.1" {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}
