package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/platform/events"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestRunServesHealthAndTheSubscriptionAndStops runs the service without a
// sidecar: it must listen at once, list its subscription for daprd, report
// not ready, and stop cleanly when its context ends.
func TestRunServesHealthAndTheSubscriptionAndStops(t *testing.T) {
	port := freePort(t)
	// envconfig reads the process environment: no t.Parallel here.
	for k, v := range map[string]string{
		"APP_HOST": "127.0.0.1", "APP_PORT": port,
		"DAPR_HTTP_PORT": freePort(t), "DAPR_GRPC_PORT": freePort(t), "LOG_LEVEL": "error",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, io.Discard) }()

	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /healthz within 10 s: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}

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
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz without a sidecar: %v %v, want 503", resp.StatusCode, err)
	}
	if resp, err := http.Get(base + "/api/v1/rooms"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("rooms without a token: %v %v, want 401", resp.StatusCode, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop within 15 s of cancel")
	}
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
