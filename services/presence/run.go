package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/papochat/papo/services/presence/internal/announce"
	"github.com/papochat/papo/services/presence/internal/tracker"
)

// Config is the presence service's configuration, read from the
// environment (settings.Base plus the variables below).
type Config struct {
	settings.Base
	// AuthAppID is the app serving the JWKS.
	AuthAppID string `envconfig:"AUTH_APP_ID" default:"auth"`
	// StateStore names the Dapr state component.
	StateStore string `envconfig:"PRESENCE_STATE_STORE" default:"presencestore"`
	// KeyPrefix puts every presence key under a namespace (default none),
	// for stacks sharing one store.
	KeyPrefix string `envconfig:"PRESENCE_KEY_PREFIX"`
	// Grace is how long a user with no connection left stays online.
	Grace time.Duration `envconfig:"PRESENCE_GRACE" default:"5s"`
	// LeaseTTL is how long a ws replica counts as alive after its last
	// heartbeat (ws heartbeats every 8 s).
	LeaseTTL time.Duration `envconfig:"PRESENCE_LEASE_TTL" default:"20s"`
	// SweepInterval is how often grace deadlines and leases are checked.
	SweepInterval time.Duration `envconfig:"PRESENCE_SWEEP_INTERVAL" default:"1s"`
}

// Validate checks the presence settings; settings.Load calls it.
func (c Config) Validate() error {
	var errs []error
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("PRESENCE_GRACE %s is negative", c.Grace))
	}
	if c.LeaseTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("PRESENCE_LEASE_TTL %s is under 2s", c.LeaseTTL))
	}
	if c.SweepInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("PRESENCE_SWEEP_INTERVAL %s is under 10ms", c.SweepInterval))
	}
	return errors.Join(errs...)
}

// defaults is Config before the environment is read: the service
// listens on 8084 unless APP_PORT says otherwise.
func defaults() Config { return Config{Base: settings.Base{Port: "8084"}} }

// run starts the service and blocks until ctx is done.
func run(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error {
	return service.Run(ctx, getenv, stdout, "presence", defaults(), serve)
}

// serve builds the service on rt and serves until ctx is done.
func serve(ctx context.Context, rt *service.Runtime, cfg Config) error {
	log, tel, client := rt.Log, rt.Tel, rt.Sidecar
	inv := rt.Invoke
	store := rt.Store(cfg.StateStore)
	pub := rt.Publisher()
	signals := pubsub.NewTopic[events.SignalBatch](pub, events.PubSub, events.TopicSignals)
	notifier := announce.New(announce.NewMessageRooms(inv), signals, log).WithMetrics(tel.Registry)
	track := tracker.New(tracker.Namespace(store, cfg.KeyPrefix), notifier, tracker.Config{Grace: cfg.Grace, LeaseTTL: cfg.LeaseTTL}, time.Now, log)

	verifier, stopFollowing, err := authn.StartServiceVerifier(ctx, cfg.Base, inv, client, log, authn.ServiceOptions{AuthApp: cfg.AuthAppID})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer stopFollowing()
	probe := rt.Probe

	handler := NewServer(Deps{
		Tracker: track, Verifier: verifier, Log: log,
		Ready: map[string]httpapi.Check{"sidecar": probe.Check, "presencestore": store.Ping},
	})
	// The server listens before the sidecar is up: daprd waits for it.
	srv, err := httpapi.ListenApp(cfg.Addr(), cfg.ProbeAddr(), cfg.AppAPIToken, telemetry.HTTP(tel.Traces, nil)(handler), log)
	if err != nil {
		return err
	}
	log.Info("presence listening", "url", srv.URL(), "grace", cfg.Grace, "lease_ttl", cfg.LeaseTTL)

	bgCtx, stopBackground := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
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
	wait.Every(ctx, interval, func() {
		if err := t.Sweep(ctx); err != nil && ctx.Err() == nil {
			log.Warn("presence sweep", "err", err)
		}
	})
}
