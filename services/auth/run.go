package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/platform/telemetry"
	"github.com/papochat/papo/platform/wait"

	"github.com/papochat/papo/services/auth/internal/account"
	"github.com/papochat/papo/services/auth/internal/keys"
	"github.com/papochat/papo/services/auth/internal/password"
	"github.com/papochat/papo/services/auth/internal/session"
	"github.com/papochat/papo/services/auth/internal/signing"
	"github.com/papochat/papo/services/auth/internal/throttle"
)

// Config is the auth service's configuration, read from the environment
// (settings.Base plus the variables below; docs/auth.md lists them).
type Config struct {
	settings.Base

	AccessTTL time.Duration `envconfig:"ACCESS_TOKEN_TTL" default:"15m"`
	// SessionTTL is a login's lifetime, refreshes included.
	SessionTTL time.Duration `envconfig:"SESSION_TTL" default:"720h"`

	StateStore  string `envconfig:"AUTH_STATE_STORE" default:"authstore"`
	SecretStore string `envconfig:"AUTH_SECRET_STORE" default:"secretstore"`
	// SigningSecret is the secret holding the keys; KeyReload is how
	// often they are re-read (rotation).
	SigningSecret string        `envconfig:"AUTH_SIGNING_SECRET" default:"auth-signing-keys"`
	KeyReload     time.Duration `envconfig:"AUTH_KEY_RELOAD" default:"1m"`
	// DevGenerateKeys generates a missing key and writes it to
	// DevKeyFile, the local secret file.
	DevGenerateKeys bool   `envconfig:"AUTH_DEV_GENERATE_KEYS" default:"false"`
	DevKeyFile      string `envconfig:"AUTH_DEV_KEY_FILE"`

	// ForwardedHops is how many proxies append to X-Forwarded-For in front
	// of auth (the gateway and the gateway's sidecar: 2). The client
	// address is that many entries from the right.
	ForwardedHops int `envconfig:"AUTH_FORWARDED_HOPS" default:"2"`
	// HashConcurrency bounds parallel argon2id runs (19 MiB each).
	HashConcurrency int `envconfig:"AUTH_HASH_CONCURRENCY" default:"4"`
	Limits

	// Trusted is AUTH_TRUSTED_ISSUERS (Base.TrustedIssuers) parsed.
	Trusted []authn.TrustedIssuerConfig `ignored:"true"`
}

// defaults is Config before the environment is read: the service
// listens on 8082 unless APP_PORT says otherwise.
func defaults() Config { return Config{Base: settings.Base{Port: "8082"}} }

// Derive implements settings.Deriver: it parses AUTH_TRUSTED_ISSUERS.
func (c *Config) Derive() error {
	trusted, err := authn.ParseTrustedIssuers(c.TrustedIssuers)
	if err != nil {
		return fmt.Errorf("AUTH_TRUSTED_ISSUERS: %w", err)
	}
	c.Trusted = trusted
	return nil
}

// Validate implements settings.Validator.
func (c Config) Validate() error {
	var errs []error
	if c.ForwardedHops < 0 || c.HashConcurrency < 0 || c.UserFreeFailures < 0 || c.IPFreeFailures < 0 || c.PairFreeFailures < 0 {
		errs = append(errs, errors.New("AUTH_FORWARDED_HOPS, AUTH_HASH_CONCURRENCY and AUTH_LOGIN_FREE_FAILURES_* must not be negative"))
	}
	if c.BackoffBase < 0 || c.BackoffMax < 0 || c.UserBackoffMax < 0 {
		errs = append(errs, errors.New("AUTH_LOGIN_BACKOFF_BASE, AUTH_LOGIN_BACKOFF_MAX and AUTH_LOGIN_USER_BACKOFF_MAX must not be negative"))
	}
	if c.KnownFor < time.Minute {
		errs = append(errs, errors.New("AUTH_LOGIN_KNOWN_FOR must be at least 1m"))
	}
	if c.DevGenerateKeys && c.DevKeyFile == "" {
		errs = append(errs, errors.New("AUTH_DEV_GENERATE_KEYS needs AUTH_DEV_KEY_FILE"))
	}
	if c.AccessTTL < time.Minute || c.AccessTTL > 24*time.Hour {
		errs = append(errs, errors.New("ACCESS_TOKEN_TTL must be between 1m and 24h"))
	}
	if c.SessionTTL < c.AccessTTL {
		errs = append(errs, errors.New("SESSION_TTL must be at least ACCESS_TOKEN_TTL"))
	}
	if c.KeyReload < time.Second {
		errs = append(errs, errors.New("AUTH_KEY_RELOAD must be at least 1s"))
	}
	return errors.Join(errs...)
}

// run starts the service and blocks until ctx is done.
func run(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error {
	return service.Run(ctx, getenv, stdout, "auth", defaults(), serve)
}

// serve builds the service on rt and serves until ctx is done. The HTTP
// server listens before anything talks to the sidecar, because daprd
// waits for the app's port.
func serve(ctx context.Context, rt *service.Runtime, cfg Config) error {
	log, tel, client := rt.Log, rt.Tel, rt.Sidecar
	pub := rt.Publisher()
	notices := revocationNotices{pubsub.NewTopic[events.SessionRevoked](pub, events.PubSub, events.TopicSessions)}
	store := rt.Store(cfg.StateStore)
	probe := rt.Probe

	hasher, err := password.NewHasher(password.Default, cfg.HashConcurrency)
	if err != nil {
		return err
	}
	ring := &signing.Keyring{}
	deps := Deps{
		Log:       log,
		Config:    cfg,
		Accounts:  account.New(store, hasher),
		Sessions:  session.New(store, notices, log, cfg.SessionTTL, cfg.AccessTTL),
		Keys:      ring,
		Directory: keys.New(store, nil),
		Ready:     map[string]httpapi.Check{"sidecar": probe.Check, cfg.StateStore: store.Ping, "signing_keys": ring.Ready},

		KnownAddresses: throttle.StoreKnown{Store: store, TTL: cfg.KnownFor},
		Metrics:        NewMetrics(tel.Registry),
	}
	handler := NewServer(deps)
	srv, err := httpapi.ListenApp(cfg.Addr(), cfg.ProbeAddr(), cfg.AppAPIToken, telemetry.HTTP(tel.Traces, nil)(handler), log)
	if err != nil {
		return err
	}
	log.Info("auth listening", "url", srv.URL(), "issuer", cfg.Issuer, "trusted_issuers", len(cfg.Trusted))

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

// revocationNotices announces revocations on events.TopicSessions
// (published to events.PubSub, read through events.Fanout), trying three
// times: the notice is what closes the session's sockets at once.
type revocationNotices struct {
	topic pubsub.Topic[events.SessionRevoked]
}

func (p revocationNotices) PublishRevoked(ctx context.Context, ev events.SessionRevoked) error {
	var err error
	for attempt := range 3 {
		if err = p.topic.Publish(ctx, ev); err == nil {
			return nil
		}
		if !wait.For(ctx, time.Duration(attempt+1)*100*time.Millisecond) {
			return err
		}
	}
	return err
}
