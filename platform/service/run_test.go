package service_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
	"github.com/papochat/papo/platform/settings"
)

// config is a service's configuration as services write them.
type config struct {
	settings.Base
	Window time.Duration `envconfig:"TEST_WINDOW" default:"1m"`
}

func (c config) Validate() error {
	if c.Window <= 0 {
		return errors.New("TEST_WINDOW must be positive")
	}
	return nil
}

func testEnv(t *testing.T, vars map[string]string) settings.Getenv {
	ports := servicetest.FreePorts(t, 2)
	env := map[string]string{
		"DAPR_HTTP_PORT": ports[0], "DAPR_GRPC_PORT": ports[1], "METRICS_ADDR": "",
	}
	for k, v := range vars {
		env[k] = v
	}
	return servicetest.Env(env)
}

// TestRunLoadsStartsServesAndCloses: serve gets the defaults with the
// environment over them and a Runtime logging as the service; what serve
// returns is what Run returns.
func TestRunLoadsStartsServesAndCloses(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	stop := errors.New("served")
	err := service.Run(context.Background(), testEnv(t, map[string]string{"TEST_WINDOW": "5s"}), &out, "svc",
		config{Base: settings.Base{Port: "8099"}},
		func(ctx context.Context, rt *service.Runtime, cfg config) error {
			if cfg.Port != "8099" || cfg.Window != 5*time.Second {
				t.Errorf("config %+v: want the default port and TEST_WINDOW", cfg)
			}
			rt.Log.Info("serving")
			return stop
		})
	if !errors.Is(err, stop) {
		t.Fatalf("Run returned %v, want serve's error", err)
	}
	if !strings.Contains(out.String(), `"app":"svc"`) {
		t.Fatalf("log %q does not name the app", out.String())
	}
}

// TestRunRefusesABadConfigurationBeforeServing: nothing is built and
// serve is not called; the error says it is the configuration.
func TestRunRefusesABadConfigurationBeforeServing(t *testing.T) {
	t.Parallel()
	err := service.Run(context.Background(), testEnv(t, map[string]string{"TEST_WINDOW": "0s"}), &bytes.Buffer{}, "svc",
		config{Base: settings.Base{Port: "8099"}},
		func(context.Context, *service.Runtime, config) error {
			t.Error("serve called with a bad configuration")
			return nil
		})
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), "TEST_WINDOW") {
		t.Fatalf("err %v, want a config error naming TEST_WINDOW", err)
	}
}

func TestLoadKeepsTheDefaultsTheEnvironmentLeaves(t *testing.T) {
	t.Parallel()
	cfg, err := service.Load(testEnv(t, nil), config{Base: settings.Base{Port: "8099"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != "8099" || cfg.Window != time.Minute {
		t.Fatalf("config %+v", cfg)
	}
	if _, err := service.Load(testEnv(t, map[string]string{"APP_PORT": "http"}), cfg); err == nil {
		t.Fatal("bad APP_PORT accepted")
	}
}
