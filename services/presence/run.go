package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/statestore/daprstore"

	"github.com/papochat/papo/services/presence/internal/announce"
	"github.com/papochat/papo/services/presence/internal/tracker"
)

// Config is the presence service's configuration, read from the environment.
type Config struct {
	Host         string        // APP_HOST, default 0.0.0.0
	Port         string        // APP_PORT, default 8084
	DaprHTTPPort string        // DAPR_HTTP_PORT, default 3500
	DaprGRPCPort string        // DAPR_GRPC_PORT, default 50001
	LogLevel     slog.Level    // LOG_LEVEL: debug, info, warn or error
	Issuer       string        // AUTH_ISSUER: the iss access tokens must carry
	Audience     string        // AUTH_AUDIENCE: the aud access tokens must carry
	Leeway       time.Duration // AUTH_LEEWAY: clock skew tolerated on exp, nbf, iat
	AuthAppID    string        // AUTH_APP_ID: the app serving the JWKS, default auth
	// StateStore names the Dapr state component (PRESENCE_STATE_STORE).
	StateStore string
	// KeyPrefix puts every presence key under a namespace
	// (PRESENCE_KEY_PREFIX, default none), for stacks sharing one store.
	KeyPrefix string
	// Grace is how long a user with no connection left stays online
	// (PRESENCE_GRACE, default 5s).
	Grace time.Duration
	// LeaseTTL is how long a ws replica counts as alive after its last
	// heartbeat (PRESENCE_LEASE_TTL, default 20s; ws heartbeats every 8 s).
	LeaseTTL time.Duration
	// SweepInterval is how often grace deadlines and leases are checked
	// (PRESENCE_SWEEP_INTERVAL, default 1s).
	SweepInterval time.Duration
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
		Port:         get("APP_PORT", "8084"),
		DaprHTTPPort: get("DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort: get("DAPR_GRPC_PORT", "50001"),
		Issuer:       get("AUTH_ISSUER", "papo"),
		Audience:     get("AUTH_AUDIENCE", "papo"),
		AuthAppID:    get("AUTH_APP_ID", "auth"),
		StateStore:   get("PRESENCE_STATE_STORE", "presencestore"),
		KeyPrefix:    getenv("PRESENCE_KEY_PREFIX"),
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		return cfg, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	for key, port := range map[string]string{"APP_PORT": cfg.Port, "DAPR_HTTP_PORT": cfg.DaprHTTPPort, "DAPR_GRPC_PORT": cfg.DaprGRPCPort} {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return cfg, fmt.Errorf("%s %q is not a port", key, port)
		}
	}
	durations := []struct {
		key, def string
		min      time.Duration
		dst      *time.Duration
	}{
		{"AUTH_LEEWAY", "30s", 0, &cfg.Leeway},
		{"PRESENCE_GRACE", "5s", 0, &cfg.Grace},
		{"PRESENCE_LEASE_TTL", "20s", 2 * time.Second, &cfg.LeaseTTL},
		{"PRESENCE_SWEEP_INTERVAL", "1s", 10 * time.Millisecond, &cfg.SweepInterval},
	}
	for _, d := range durations {
		v, err := time.ParseDuration(get(d.key, d.def))
		if err != nil || v < d.min {
			return cfg, fmt.Errorf("%s %q is not a duration of at least %s", d.key, get(d.key, d.def), d.min)
		}
		*d.dst = v
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
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "presence")

	client, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer client.Close()
	inv := invoke.New(cfg.DaprHTTPPort)
	store := daprstore.New(client, cfg.StateStore)
	notifier := announce.New(announce.NewMessageRooms(inv), announce.NewDaprPublisher(client), log)
	track := tracker.New(tracker.Namespace(store, cfg.KeyPrefix), notifier, tracker.Config{Grace: cfg.Grace, LeaseTTL: cfg.LeaseTTL}, time.Now, log)

	keys := authn.NewRemoteKeys(inv, cfg.AuthAppID, authn.RemoteKeysOptions{})
	revoked := authn.NewRevocations()
	verifier := authn.NewVerifier(authn.Config{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway}, keys,
		authn.WithRevocations(revoked))
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)

	handler := NewServer(Deps{
		Tracker: track, Verifier: verifier, Log: log,
		Ready: map[string]httpapi.Check{"sidecar": probe.Check, "presencestore": store.Ping},
	})
	// The server listens before the sidecar is up: daprd waits for it.
	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), handler, log)
	if err != nil {
		return err
	}
	log.Info("presence listening", "url", srv.URL(), "grace", cfg.Grace, "lease_ttl", cfg.LeaseTTL)

	bgCtx, stopBackground := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if probe.Wait(bgCtx) == nil {
			_ = authn.FollowRevocations(bgCtx, client, revoked, log, nil)
		}
	}()
	go func() {
		defer wg.Done()
		if probe.Wait(bgCtx) == nil {
			sweep(bgCtx, track, cfg.SweepInterval, log)
		}
	}()
	err = srv.Serve(ctx, 10*time.Second)
	stopBackground()
	wg.Wait()
	return err
}

// sweep runs the tracker's sweep every interval until ctx is done.
func sweep(ctx context.Context, t *tracker.Tracker, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := t.Sweep(ctx); err != nil && ctx.Err() == nil {
			log.Warn("presence sweep", "err", err)
		}
	}
}
