package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/sidecar"
)

// Config is the notification service's configuration, read from the
// environment.
type Config struct {
	Host         string
	Port         string
	DaprHTTPPort string
	DaprGRPCPort string
	LogLevel     slog.Level
}

func loadConfig(getenv func(string) string) (Config, error) {
	cfg := Config{
		Host:         envOr(getenv, "APP_HOST", "0.0.0.0"),
		Port:         envOr(getenv, "APP_PORT", "8086"),
		DaprHTTPPort: envOr(getenv, "DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort: envOr(getenv, "DAPR_GRPC_PORT", "50001"),
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(envOr(getenv, "LOG_LEVEL", "info"))); err != nil {
		return Config{}, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	return cfg, nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "notification")
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)

	r := chi.NewRouter()
	r.Use(httpapi.RequestIDs, httpapi.Recover(log), httpapi.AccessLog(log))
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", httpapi.Readyz(map[string]httpapi.Check{"sidecar": probe.Check}))

	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), r, log)
	if err != nil {
		return err
	}
	log.Info("notification listening", "url", srv.URL())
	return srv.Serve(ctx, 10*time.Second)
}
