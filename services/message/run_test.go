package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/servicetest"
)

// TestRunServesHealthAndTheSubscriptionAndStops runs the service without a
// sidecar: it must listen at once, list its subscription for daprd, report
// not ready, and stop cleanly when its context ends.
func TestRunServesHealthAndTheSubscriptionAndStops(t *testing.T) {
	base, stop := servicetest.Start(t, run, nil)
	resp, err := http.Get(base + "/dapr/subscribe")
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
	if got := servicetest.Status(t, http.MethodGet, base+"/api/v1/rooms"); got != http.StatusUnauthorized {
		t.Fatalf("rooms without a token: %d, want 401", got)
	}
	stop()
}

func TestConfigRefusesBadValues(t *testing.T) {
	for _, env := range []map[string]string{
		{"APP_PORT": "eighty"},
		{"DAPR_GRPC_PORT": "70000"},
		{"LOG_LEVEL": "loud"},
		{"AUTH_LEEWAY": "soon"},
	} {
		t.Run(fmt.Sprint(env), func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			if _, err := loadConfig(); err == nil {
				t.Errorf("config %v accepted", env)
			}
		})
	}
	cfg, err := loadConfig()
	if err != nil || cfg.Port != "8083" || cfg.StateStore != "messagestore" || !strings.Contains(cfg.Host, "0.0.0.0") {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}
