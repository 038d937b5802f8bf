package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
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

func TestRunServesHealthAndStops(t *testing.T) {
	port := freePort(t)
	// envconfig reads the process environment: no t.Parallel here.
	for k, v := range map[string]string{
		"APP_HOST": "127.0.0.1", "APP_PORT": port,
		// No sidecar answers on these ports: ready must say so.
		"DAPR_HTTP_PORT": freePort(t), "DAPR_GRPC_PORT": freePort(t),
		"LOG_LEVEL": "error",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, io.Discard) }()

	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/healthz = %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz never answered: %v", err)
		}
		<-tick.C
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a sidecar = %d, want 503", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestConfigIsValidated(t *testing.T) {
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := loadConfig()
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if tc.name == "defaults" && cfg.Window != time.Minute {
				t.Fatalf("default window %v", cfg.Window)
			}
		})
	}
}
