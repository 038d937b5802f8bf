package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"

	"github.com/papochat/papo/services/message/internal/room"
	"github.com/papochat/papo/services/message/internal/server"
)

// Config is the message service's configuration, read from the
// environment (settings.Base plus the variables below).
type Config struct {
	settings.Base
	// StateStore names the Dapr state component holding rooms and logs.
	StateStore string `envconfig:"MESSAGE_STATE_STORE" default:"messagestore"`
	// AuthAppID is the auth service's app-id: its JWKS, and whether a user
	// named in a DM or an added member exists.
	AuthAppID string `envconfig:"MESSAGE_AUTH_APP_ID" default:"auth"`
	// MaxRoomsPerUser caps the rooms (DMs apart) a user may create or
	// join: 409 too_many_rooms past it.
	MaxRoomsPerUser int `envconfig:"MESSAGE_MAX_ROOMS_PER_USER" default:"1000"`
	// RoundInterval is the least time between two commit rounds: more
	// latency (up to it) for fewer sidecar calls per message under load.
	// 0, the default, starts each round as soon as the last has committed
	// (docs/message.md; docs/benchmarks.md measures the trade).
	RoundInterval time.Duration `envconfig:"MESSAGE_ROUND_INTERVAL" default:"0s"`
}

// Validate implements settings.Validator.
func (c Config) Validate() error {
	if c.MaxRoomsPerUser < 1 {
		return errors.New("MESSAGE_MAX_ROOMS_PER_USER must be at least 1")
	}
	if c.RoundInterval < 0 || c.RoundInterval > time.Second {
		return errors.New("MESSAGE_ROUND_INTERVAL must be between 0 and 1s")
	}
	return nil
}

// defaults is Config before the environment is read: the service
// listens on 8083 unless APP_PORT says otherwise.
func defaults() Config { return Config{Base: settings.Base{Port: "8083"}} }

// run starts the service and blocks until ctx is done.
func run(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error {
	return service.Run(ctx, getenv, stdout, "message", defaults(), serve)
}

// serve builds the service on rt and serves until ctx is done.
func serve(ctx context.Context, rt *service.Runtime, cfg Config) error {
	log, tel, client := rt.Log, rt.Tel, rt.Sidecar
	store := rt.Store(cfg.StateStore)
	pub := rt.Publisher().On(events.PubSub)
	rooms := room.New(store, pub, log)
	rooms.SetTelemetry(room.NewMetrics(tel.Registry), tel.Tracer("papo/message"))
	rooms.SetMaxRoomsPerUser(cfg.MaxRoomsPerUser)
	rooms.SetRoundInterval(cfg.RoundInterval)

	// Tokens are verified against the auth app's JWKS, fetched through
	// Dapr; sessions revoked on sessions.revoked are refused at once. The
	// revocation follower stops with ctx, and run waits for it before
	// closing the client.
	inv := rt.Invoke
	verifier, stopFollowing, err := authn.StartServiceVerifier(ctx, cfg.Base, inv, client, log, authn.ServiceOptions{AuthApp: cfg.AuthAppID})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer stopFollowing()
	probe := rt.Probe

	mux := server.Routes(server.Deps{
		Rooms: rooms, Verifier: verifier, Log: log,
		Users:  server.AuthUsers{Invoke: inv, AppID: cfg.AuthAppID},
		Ready:  map[string]httpapi.Check{"sidecar": probe.Check, "messagestore": store.Ping},
		Traces: tel.Traces,
	})
	// Deliveries of messages.submitted come to the same router, so they
	// meet the app token check and the server's limits.
	pubsub.Mount(mux, log, server.Submitted(rooms))
	srv, err := httpapi.ListenApp(cfg.Addr(), cfg.ProbeAddr(), cfg.AppAPIToken, mux, log)
	if err != nil {
		return err
	}
	log.Info("message listening", "url", srv.URL())
	// Shutdown lets in-flight requests (and deliveries) finish; then the
	// append pipeline announces and materializes what they committed.
	err = srv.Serve(ctx, 10*time.Second)
	qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if qerr := rooms.Quiesce(qctx); qerr != nil {
		log.Warn("stopping with appends not yet announced or materialized (the next writer finishes them)", "err", qerr)
	}
	return err
}
