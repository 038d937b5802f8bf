package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	daprhttp "github.com/dapr/go-sdk/service/http"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/statestore/daprstore"

	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
	"github.com/papochat/papo/services/message/internal/server"
)

// Config is the message service's configuration, read from the environment.
type Config struct {
	Host         string        // APP_HOST, default 0.0.0.0
	Port         string        // APP_PORT, default 8083
	DaprHTTPPort string        // DAPR_HTTP_PORT, default 3500
	DaprGRPCPort string        // DAPR_GRPC_PORT, default 50001
	LogLevel     slog.Level    // LOG_LEVEL: debug, info, warn or error
	Issuer       string        // AUTH_ISSUER: the iss access tokens must carry
	Audience     string        // AUTH_AUDIENCE: the aud access tokens must carry
	Leeway       time.Duration // AUTH_LEEWAY: clock skew tolerated on exp, nbf, iat
	// StateStore names the Dapr state component holding rooms and logs
	// (MESSAGE_STATE_STORE).
	StateStore string
}

// loadConfig reads Config through getenv, so tests pass their own
// environment instead of changing the process's. (envconfig reads only the
// process environment, hence the explicit list.)
func loadConfig(getenv func(string) string) (Config, error) {
	get := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	cfg := Config{
		Host:         get("APP_HOST", "0.0.0.0"),
		Port:         get("APP_PORT", "8083"),
		DaprHTTPPort: get("DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort: get("DAPR_GRPC_PORT", "50001"),
		Issuer:       get("AUTH_ISSUER", "papo"),
		Audience:     get("AUTH_AUDIENCE", "papo"),
		StateStore:   get("MESSAGE_STATE_STORE", "messagestore"),
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		return cfg, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	leeway, err := time.ParseDuration(get("AUTH_LEEWAY", "30s"))
	if err != nil || leeway < 0 {
		return cfg, fmt.Errorf("AUTH_LEEWAY %q is not a non-negative duration", get("AUTH_LEEWAY", ""))
	}
	cfg.Leeway = leeway
	for key, port := range map[string]string{"APP_PORT": cfg.Port, "DAPR_HTTP_PORT": cfg.DaprHTTPPort, "DAPR_GRPC_PORT": cfg.DaprGRPCPort} {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return cfg, fmt.Errorf("%s %q is not a port", key, port)
		}
	}
	return cfg, nil
}

// run starts the service and blocks until ctx is done. getenv is the
// environment (os.Getenv in main, a map in tests).
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "message")

	client, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer client.Close()
	store := daprstore.New(client, cfg.StateStore)
	rooms := room.New(store, publish.NewDapr(client, events.PubSub), log)

	// Tokens are verified against the auth app's JWKS, fetched through
	// Dapr; sessions revoked on sessions.revoked are refused at once.
	keys := authn.NewRemoteKeys(invoke.New(cfg.DaprHTTPPort), "auth", authn.RemoteKeysOptions{})
	revoked := authn.NewRevocations()
	verifier := authn.NewVerifier(authn.Config{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway}, keys,
		authn.WithRevocations(revoked))
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)

	mux := server.Routes(server.Deps{
		Rooms: rooms, Verifier: verifier, Log: log,
		Ready: map[string]httpapi.Check{"sidecar": probe.Check, "messagestore": store.Ping},
	})
	addr := net.JoinHostPort(cfg.Host, cfg.Port)
	// One router serves the API and Dapr's callbacks: the SDK's service
	// adds /dapr/subscribe and the subscription's route to it.
	svc := daprhttp.NewServiceWithMux(addr, mux)
	if err := server.Subscribe(svc, rooms, log); err != nil {
		return fmt.Errorf("subscribe to %s: %w", events.TopicSubmitted, err)
	}

	// The revocation follower is owned by run: it stops with ctx, and run
	// waits for it before returning.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		if err := authn.FollowRevocations(followCtx, client, revoked, log, nil); err != nil && followCtx.Err() == nil {
			log.Error("follow session revocations", "err", err)
		}
	}()
	defer func() { stopFollowing(); <-followed }()

	errc := make(chan error, 1)
	go func() { errc <- svc.Start() }()
	log.Info("message listening", "addr", addr)
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	// GracefulStop lets in-flight requests (and deliveries) finish.
	if err := svc.GracefulStop(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
