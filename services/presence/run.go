package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/statestore/daprstore"
)

// Config is the presence service's configuration, read from the environment.
type Config struct {
	Host         string     // APP_HOST, default 0.0.0.0
	Port         string     // APP_PORT, default 8084
	DaprHTTPPort string     // DAPR_HTTP_PORT, default 3500
	DaprGRPCPort string     // DAPR_GRPC_PORT, default 50001
	LogLevel     slog.Level // LOG_LEVEL: debug, info, warn or error
	// StateStore names the Dapr state component (PRESENCE_STATE_STORE).
	StateStore string
}

// loadConfig reads Config through getenv, so tests pass their own
// environment instead of changing the process's.
func loadConfig(getenv func(string) string) (Config, error) {
	get := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	cfg := Config{
		Host:         get("APP_HOST", "0.0.0.0"),
		Port:         get("APP_PORT", "8084"),
		DaprHTTPPort: get("DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort: get("DAPR_GRPC_PORT", "50001"),
		StateStore:   get("PRESENCE_STATE_STORE", "presencestore"),
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		return cfg, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	for key, port := range map[string]string{"APP_PORT": cfg.Port, "DAPR_HTTP_PORT": cfg.DaprHTTPPort, "DAPR_GRPC_PORT": cfg.DaprGRPCPort} {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return cfg, fmt.Errorf("%s %q is not a port", key, port)
		}
	}
	return cfg, nil
}

// run starts the service and blocks until ctx is done.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "presence")
	client, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer client.Close()
	store := daprstore.New(client, cfg.StateStore)
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)

	r := chi.NewRouter()
	r.Use(httpapi.RequestIDs, httpapi.AccessLog(log), httpapi.Recover(log))
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", httpapi.Readyz(map[string]httpapi.Check{"sidecar": probe.Check, "presencestore": store.Ping}))

	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), r, log)
	if err != nil {
		return err
	}
	log.Info("presence listening", "url", srv.URL())
	return srv.Serve(ctx, 10*time.Second)
}
