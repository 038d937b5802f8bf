package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/handoff"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/services/ws/internal/hub"
	"github.com/papochat/papo/services/ws/internal/presence"
	"github.com/papochat/papo/services/ws/internal/upstream"
)

// Config is the ws service's configuration, read from the environment
// (settings.Base plus the variables below).
type Config struct {
	settings.Base
	AuthAppID    string `envconfig:"WS_AUTH_APP_ID" default:"auth"`
	MessageAppID string `envconfig:"WS_MESSAGE_APP_ID" default:"message"`
	// Replica names this replica to the presence service (default the
	// host name); PresenceAppID is that service's app-id and
	// PresenceInterval the heartbeat period.
	Replica          string        `envconfig:"APP_REPLICA"`
	PresenceAppID    string        `envconfig:"WS_PRESENCE_APP_ID" default:"presence"`
	PresenceInterval time.Duration `envconfig:"WS_PRESENCE_HEARTBEAT" default:"8s"`
	// HandoffSocket, when set, is the Unix socket on which the gateway
	// hands this replica its clients' connections (package handoff): the
	// client then talks to the replica directly. Its directory must be
	// private to the user both run as (0700); it is created if missing.
	HandoffSocket string `envconfig:"WS_HANDOFF_SOCKET"`
	// ShutdownGrace bounds the drain after SIGTERM.
	ShutdownGrace time.Duration `envconfig:"WS_SHUTDOWN_GRACE" default:"10s"`
	// GCPercent is the garbage collector's target (Go's GOGC), set by run.
	// A replica's memory is mostly per-connection state and short-lived
	// frames; 50 keeps 18,000 idle sockets under 20 KiB each of RSS
	// (docs/benchmarks.md) for a little more GC work. -1 turns the
	// collector off, as GOGC=off does; not advised.
	GCPercent int `envconfig:"WS_GC_PERCENT" default:"50"`

	// The hub's limits. Unset ones keep hub.DefaultConfig's values, which
	// defaults presets; WS_BATCH_WINDOW is off (0) unless set.
	AllowedOrigins  []string      `envconfig:"WS_ALLOWED_ORIGINS"` // comma list
	MaxConnsPerUser int           `envconfig:"WS_MAX_CONNS_PER_USER"`
	QueueBytes      int           `envconfig:"WS_QUEUE_BYTES"`
	WriteTimeout    time.Duration `envconfig:"WS_WRITE_TIMEOUT"`
	PingInterval    time.Duration `envconfig:"WS_PING_INTERVAL"`
	PongWait        time.Duration `envconfig:"WS_PONG_WAIT"`
	Rate            float64       `envconfig:"WS_RATE"`
	Burst           int           `envconfig:"WS_BURST"`
	LiveHold        time.Duration `envconfig:"WS_LIVE_HOLD"`
	BatchWindow     time.Duration `envconfig:"WS_BATCH_WINDOW"`
	MaxBatch        int           `envconfig:"WS_MAX_BATCH"`
	// SubmitInflight bounds the calls handing submissions to the message
	// service that may be in flight at once.
	SubmitInflight int           `envconfig:"WS_SUBMIT_INFLIGHT"`
	TypingEvery    time.Duration `envconfig:"WS_TYPING_EVERY"`

	// Hub is the hub's configuration made from the limits above.
	Hub hub.Config `ignored:"true"`
}

// maxSocketPath is the longest Unix socket path every Unix accepts.
const maxSocketPath = 103

// defaults is Config before the environment is read: the service
// listens on 8081 unless APP_PORT says otherwise, and the hub's limits
// are hub.DefaultConfig's.
func defaults() Config {
	d := hub.DefaultConfig()
	return Config{
		Base: settings.Base{Port: "8081"}, Replica: hostname(),
		MaxConnsPerUser: d.MaxConnsPerUser, QueueBytes: d.QueueBytes, WriteTimeout: d.WriteTimeout,
		PingInterval: d.PingInterval, PongWait: d.PongWait, Rate: d.Rate, Burst: d.Burst,
		LiveHold: d.LiveHold, MaxBatch: d.MaxBatch, TypingEvery: d.TypingEvery, SubmitInflight: d.SubmitInflight,
	}
}

// Derive implements settings.Deriver: it makes Hub from the limits.
func (c *Config) Derive() error {
	h := hub.DefaultConfig()
	for _, o := range c.AllowedOrigins {
		if o = strings.TrimSpace(o); o != "" {
			h.AllowedOrigins = append(h.AllowedOrigins, o)
		}
	}
	h.MaxConnsPerUser, h.QueueBytes, h.WriteTimeout = c.MaxConnsPerUser, c.QueueBytes, c.WriteTimeout
	h.PingInterval = c.PingInterval
	h.PongWait = max(c.PongWait, c.PingInterval+5*time.Second)
	h.Rate, h.Burst = c.Rate, c.Burst
	h.LiveHold, h.BatchWindow, h.MaxBatch, h.TypingEvery = c.LiveHold, c.BatchWindow, c.MaxBatch, c.TypingEvery
	h.SubmitInflight = c.SubmitInflight
	h.Replica = c.Replica
	c.Hub = h
	return nil
}

// Validate implements settings.Validator.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		n   int
	}{
		{"WS_MAX_CONNS_PER_USER", c.MaxConnsPerUser}, {"WS_QUEUE_BYTES", c.QueueBytes},
		{"WS_BURST", c.Burst}, {"WS_MAX_BATCH", c.MaxBatch}, {"WS_SUBMIT_INFLIGHT", c.SubmitInflight},
	} {
		if f.n <= 0 {
			errs = append(errs, fmt.Errorf("%s %d is not a positive integer", f.key, f.n))
		}
	}
	for _, f := range []struct {
		key string
		d   time.Duration
	}{
		{"WS_SHUTDOWN_GRACE", c.ShutdownGrace}, {"WS_WRITE_TIMEOUT", c.WriteTimeout},
		{"WS_PING_INTERVAL", c.PingInterval}, {"WS_PONG_WAIT", c.PongWait}, {"WS_LIVE_HOLD", c.LiveHold},
		{"WS_BATCH_WINDOW", c.BatchWindow}, {"WS_TYPING_EVERY", c.TypingEvery},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", f.key, f.d))
		}
	}
	if c.GCPercent < -1 {
		errs = append(errs, fmt.Errorf("WS_GC_PERCENT %d is below -1", c.GCPercent))
	}
	if c.PresenceInterval <= 0 {
		errs = append(errs, fmt.Errorf("WS_PRESENCE_HEARTBEAT must be positive"))
	}
	if c.Rate <= 0 {
		errs = append(errs, fmt.Errorf("WS_RATE %v is not a positive number", c.Rate))
	}
	if c.Replica == "" {
		errs = append(errs, fmt.Errorf("APP_REPLICA is empty"))
	}
	if len(c.HandoffSocket) > maxSocketPath {
		errs = append(errs, fmt.Errorf("WS_HANDOFF_SOCKET %q is longer than a Unix socket path may be (%d bytes)", c.HandoffSocket, maxSocketPath))
	}
	return errors.Join(errs...)
}

// run serves /ws until ctx is done, then shuts down in order: stop
// accepting, close every socket with 1001 going away, drain (at most
// ShutdownGrace), stop the subscriptions, close the sidecar client.
func run(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error {
	return service.Run(ctx, getenv, stdout, "ws", defaults(), serve)
}

// serve builds the service on rt and serves until ctx is done (run).
func serve(ctx context.Context, rt *service.Runtime, cfg Config) error {
	debug.SetGCPercent(cfg.GCPercent)
	log, tel, dc := rt.Log, rt.Tel, rt.Sidecar
	inv := rt.Invoke

	verifier, err := authn.NewServiceVerifier(cfg.Base, inv, authn.ServiceOptions{AuthApp: cfg.AuthAppID})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	reporter := presence.New(presence.Config{Replica: cfg.Replica, AppID: cfg.PresenceAppID, Interval: cfg.PresenceInterval}, inv, log)
	h := hub.New(cfg.Hub, hub.Deps{
		Verifier:  verifier,
		Sessions:  upstream.Sessions{Invoke: inv, AppID: cfg.AuthAppID},
		Messages:  upstream.Messages{Invoke: inv, AppID: cfg.MessageAppID},
		Publisher: rt.Publisher(),
		Log:       log,
		Presence:  reporter,
		Metrics:   hub.NewMetrics(tel.Registry),
		Traces:    tel.Traces,
	})
	// The revocation follower closes a revoked session's sockets. It runs
	// until after the drain, like the subscriptions.
	stopFollowing := authn.StartRevocations(context.Background(), cfg.Base, inv, dc, verifier.Revocations(), log, authn.ServiceOptions{
		AuthApp:  cfg.AuthAppID,
		OnRevoke: h.SessionRevoked,
	})
	defer stopFollowing()
	// Room events published while the subscription was broken never come:
	// the replica catches up from the message service when it is back.
	roomEvents := &pubsub.Stream{Client: dc, PubSub: events.Fanout, Topic: events.TopicRoomEvents, Log: log, Reopened: h.CatchUp}
	signals := &pubsub.Stream{Client: dc, PubSub: events.Fanout, Topic: events.TopicSignals, Log: log}

	probe := rt.Probe
	handler := routes(h, map[string]httpapi.Check{
		"sidecar":      probe.Check,
		"room.events":  subscribed(roomEvents),
		"room.signals": subscribed(signals),
	}, log)

	// Listen before touching the sidecar: daprd waits for the app port.
	srv, err := httpapi.ListenApp(cfg.Addr(), cfg.ProbeAddr(), cfg.AppAPIToken, handler, log, "/ws")
	if err != nil {
		return err
	}
	if cfg.HandoffSocket != "" {
		// Connections the gateway hands off are served by the same
		// server, so they meet the same checks, limits and shutdown.
		hl, err := handoff.Listen(cfg.HandoffSocket, log)
		if err != nil {
			return err
		}
		defer hl.Close()
		srv.ServeAlso(hl)
		log.Info("accepting connections handed off by the gateway", "socket", cfg.HandoffSocket)
	}
	log.Info("ws listening", "url", srv.URL())

	subCtx, stopSubs := context.WithCancel(context.Background())
	var subs sync.WaitGroup
	subs.Add(3)
	// The reporter stops with the subscriptions, after the drain, so the
	// disconnects of a graceful shutdown still reach presence.
	go func() { defer subs.Done(); reporter.Run(subCtx, h.LiveUsers) }()
	go func() { defer subs.Done(); roomEvents.Run(subCtx, pubsub.JSON(fanOut(h.RoomEvents))) }()
	go func() { defer subs.Done(); signals.Run(subCtx, pubsub.JSON(fanOut(h.Signals))) }()

	serveErr := make(chan error, 1)
	serveCtx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	go func() { serveErr <- srv.Serve(serveCtx, cfg.ShutdownGrace) }()

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		log.Info("shutting down")
		// Stop accepting first: the hub refuses new handshakes at once and
		// the listener closes; then the sockets are closed and drained.
		stopServe()
		drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		if derr := h.Shutdown(drainCtx); derr != nil {
			log.Warn("drain incomplete", "err", derr)
		}
		cancel()
		err = <-serveErr
	}
	stopSubs()
	subs.Wait()
	stopFollowing()
	return err
}

// fanOut adapts a hub method to a pubsub.Handler. The hub takes every
// message that decodes: a fan-out message is not worth a redelivery, and
// the gap fill recovers a missed room event.
func fanOut[T any](f func(T)) pubsub.Handler[T] {
	return func(_ context.Context, v T) error { f(v); return nil }
}

// hostname names the replica when APP_REPLICA is unset (a pod's name).
func hostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "ws"
	}
	return name
}
