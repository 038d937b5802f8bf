package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/statestore/daprstore"

	"github.com/papochat/papo/services/auth/internal/account"
	"github.com/papochat/papo/services/auth/internal/password"
	"github.com/papochat/papo/services/auth/internal/session"
	"github.com/papochat/papo/services/auth/internal/signing"
)

// Config is the auth service's configuration, read from the environment.
type Config struct {
	Host         string     // APP_HOST, default 0.0.0.0
	Port         string     // APP_PORT, default 8082
	DaprHTTPPort string     // DAPR_HTTP_PORT, default 3500
	DaprGRPCPort string     // DAPR_GRPC_PORT, default 50001
	LogLevel     slog.Level // LOG_LEVEL

	Issuer   string        // AUTH_ISSUER, default papo
	Audience string        // AUTH_AUDIENCE, default papo
	Leeway   time.Duration // AUTH_LEEWAY, default 30s

	AccessTTL  time.Duration // ACCESS_TOKEN_TTL, default 15m
	SessionTTL time.Duration // SESSION_TTL: a login's lifetime, refreshes included; default 720h

	StateStore    string        // AUTH_STATE_STORE, default authstore
	SecretStore   string        // AUTH_SECRET_STORE, default secretstore
	SigningSecret string        // AUTH_SIGNING_SECRET: the secret holding the keys, default auth-signing-keys
	KeyReload     time.Duration // AUTH_KEY_RELOAD: how often keys are re-read (rotation), default 1m
	// DevGenerateKeys (AUTH_DEV_GENERATE_KEYS) generates a missing key and
	// writes it to DevKeyFile (AUTH_DEV_KEY_FILE), the local secret file.
	DevGenerateKeys bool
	DevKeyFile      string

	// TrustedIssuers (AUTH_TRUSTED_ISSUERS): external OIDC issuers, JSON.
	TrustedIssuers []authn.TrustedIssuerConfig
	// ForwardedHops (AUTH_FORWARDED_HOPS): how many proxies append to
	// X-Forwarded-For in front of auth (the gateway and the gateway's
	// sidecar: 2). The client address is that many entries from the right.
	ForwardedHops int
	// HashConcurrency (AUTH_HASH_CONCURRENCY) bounds parallel argon2id
	// runs (19 MiB each).
	HashConcurrency int
	Limits          Limits
}

// loadConfig reads Config through getenv (envconfig reads only the
// process environment, and tests pass their own).
func loadConfig(getenv func(string) string) (Config, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	var errs []string
	dur := func(key, def string) time.Duration {
		d, err := time.ParseDuration(get(key, def))
		if err != nil || d < 0 {
			errs = append(errs, fmt.Sprintf("%s %q is not a duration", key, get(key, def)))
		}
		return d
	}
	num := func(key, def string) int {
		n, err := strconv.Atoi(get(key, def))
		if err != nil || n < 0 {
			errs = append(errs, fmt.Sprintf("%s %q is not a non-negative integer", key, get(key, def)))
		}
		return n
	}
	cfg := Config{
		Host:            get("APP_HOST", "0.0.0.0"),
		Port:            get("APP_PORT", "8082"),
		DaprHTTPPort:    get("DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort:    get("DAPR_GRPC_PORT", "50001"),
		Issuer:          get("AUTH_ISSUER", "papo"),
		Audience:        get("AUTH_AUDIENCE", "papo"),
		Leeway:          dur("AUTH_LEEWAY", "30s"),
		AccessTTL:       dur("ACCESS_TOKEN_TTL", "15m"),
		SessionTTL:      dur("SESSION_TTL", "720h"),
		StateStore:      get("AUTH_STATE_STORE", "authstore"),
		SecretStore:     get("AUTH_SECRET_STORE", "secretstore"),
		SigningSecret:   get("AUTH_SIGNING_SECRET", "auth-signing-keys"),
		KeyReload:       dur("AUTH_KEY_RELOAD", "1m"),
		DevKeyFile:      get("AUTH_DEV_KEY_FILE", ""),
		ForwardedHops:   num("AUTH_FORWARDED_HOPS", "2"),
		HashConcurrency: num("AUTH_HASH_CONCURRENCY", "4"),
		Limits: Limits{
			UserFreeFailures: num("AUTH_LOGIN_FREE_FAILURES_USER", "5"),
			IPFreeFailures:   num("AUTH_LOGIN_FREE_FAILURES_IP", "20"),
			BackoffBase:      dur("AUTH_LOGIN_BACKOFF_BASE", "1s"),
			BackoffMax:       dur("AUTH_LOGIN_BACKOFF_MAX", "15m"),
		},
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, "LOG_LEVEL: "+err.Error())
	}
	gen, err := strconv.ParseBool(get("AUTH_DEV_GENERATE_KEYS", "false"))
	if err != nil {
		errs = append(errs, "AUTH_DEV_GENERATE_KEYS is not a boolean")
	}
	cfg.DevGenerateKeys = gen
	if gen && cfg.DevKeyFile == "" {
		errs = append(errs, "AUTH_DEV_GENERATE_KEYS needs AUTH_DEV_KEY_FILE")
	}
	if cfg.TrustedIssuers, err = authn.ParseTrustedIssuers(getenv("AUTH_TRUSTED_ISSUERS")); err != nil {
		errs = append(errs, "AUTH_TRUSTED_ISSUERS: "+err.Error())
	}
	if cfg.AccessTTL < time.Minute || cfg.AccessTTL > 24*time.Hour {
		errs = append(errs, "ACCESS_TOKEN_TTL must be between 1m and 24h")
	}
	if cfg.SessionTTL < cfg.AccessTTL {
		errs = append(errs, "SESSION_TTL must be at least ACCESS_TOKEN_TTL")
	}
	if cfg.KeyReload < time.Second {
		errs = append(errs, "AUTH_KEY_RELOAD must be at least 1s")
	}
	for key, port := range map[string]string{"APP_PORT": cfg.Port, "DAPR_HTTP_PORT": cfg.DaprHTTPPort, "DAPR_GRPC_PORT": cfg.DaprGRPCPort} {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Sprintf("%s %q is not a port", key, port))
		}
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return cfg, nil
}

// run starts the service and blocks until ctx is done. The HTTP server
// listens before anything talks to the sidecar, because daprd waits for
// the app's port.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "auth")

	client, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer client.Close()
	store := daprstore.New(client, cfg.StateStore)
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)

	hasher, err := password.NewHasher(password.Default, cfg.HashConcurrency)
	if err != nil {
		return err
	}
	ring := &signing.Keyring{}
	deps := Deps{
		Log:      log,
		Config:   cfg,
		Accounts: account.New(store, hasher),
		Sessions: session.New(store, daprPublisher{client}, log, cfg.SessionTTL, cfg.AccessTTL),
		Keys:     ring,
		Ready:    map[string]httpapi.Check{"sidecar": probe.Check, cfg.StateStore: store.Ping, "signing_keys": ring.Ready},
	}
	handler := NewServer(deps)
	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), handler, log)
	if err != nil {
		return err
	}
	log.Info("auth listening", "url", srv.URL(), "issuer", cfg.Issuer, "trusted_issuers", len(cfg.TrustedIssuers))

	var wg sync.WaitGroup
	defer wg.Wait()
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		if err := probe.Wait(bg); err != nil {
			return
		}
		src := &signing.Source{
			Secrets: client, Store: cfg.SecretStore, Name: cfg.SigningSecret,
			DevGenerate: cfg.DevGenerateKeys, DevKeyFile: cfg.DevKeyFile, Log: log,
		}
		src.Keep(bg, ring, cfg.KeyReload)
	})
	return srv.Serve(ctx, 10*time.Second)
}

// daprPublisher announces revocations through the Dapr pub/sub component
// events.PubSub; subscribers read them through events.Fanout.
type daprPublisher struct{ client dapr.Client }

func (p daprPublisher) PublishRevoked(ctx context.Context, ev events.SessionRevoked) error {
	var err error
	for attempt := range 3 {
		if err = p.client.PublishEvent(ctx, events.PubSub, events.TopicSessions, ev); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return err
}
