package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects the service's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunServesHealthBeforeTheSidecarAndStops(t *testing.T) {
	for k, v := range map[string]string{"APP_HOST": "127.0.0.1", "APP_PORT": "0", "DAPR_HTTP_PORT": "1", "DAPR_GRPC_PORT": "1"} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, &out) }()

	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" {
		for _, line := range strings.Split(out.String(), "\n") {
			var rec struct{ Msg, URL string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "presence listening" {
				url = rec.URL
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening line in %q", out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log, bounded by the deadline
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s = %d, want %d", path, resp.StatusCode, want)
		}
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

func TestConfigRefusesBadValues(t *testing.T) {
	for key, value := range map[string]string{
		"APP_PORT":                "http",
		"PRESENCE_GRACE":          "-1s",
		"PRESENCE_LEASE_TTL":      "1s",
		"PRESENCE_SWEEP_INTERVAL": "1ms",
		"LOG_LEVEL":               "loud",
	} {
		t.Run(key, func(t *testing.T) {
			t.Setenv(key, value)
			if _, err := loadConfig(); err == nil {
				t.Errorf("%s=%s accepted", key, value)
			}
		})
	}
	cfg, err := loadConfig()
	if err != nil || cfg.Grace != 5*time.Second || cfg.LeaseTTL != 20*time.Second {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
}
