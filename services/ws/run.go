package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/services/ws/internal/bus"
	"github.com/papochat/papo/services/ws/internal/hub"
	"github.com/papochat/papo/services/ws/internal/presence"
	"github.com/papochat/papo/services/ws/internal/upstream"
)

// Config is the ws service's configuration, read from the environment.
type Config struct {
	Host         string        // APP_HOST, default 0.0.0.0
	Port         string        // APP_PORT, default 8081
	DaprHTTPPort string        // DAPR_HTTP_PORT, default 3500
	DaprGRPCPort string        // DAPR_GRPC_PORT, default 50001
	LogLevel     slog.Level    // LOG_LEVEL: debug, info, warn or error
	Issuer       string        // AUTH_ISSUER, default papo
	Audience     string        // AUTH_AUDIENCE, default papo
	Leeway       time.Duration // AUTH_LEEWAY, default 30s
	AuthAppID    string        // WS_AUTH_APP_ID, default auth
	MessageAppID string        // WS_MESSAGE_APP_ID, default message
	// Replica names this replica to the presence service (APP_REPLICA,
	// default the host name); PresenceAppID is that service's app-id
	// (WS_PRESENCE_APP_ID, default presence) and PresenceInterval the
	// heartbeat period (WS_PRESENCE_HEARTBEAT, default 8s).
	Replica          string
	PresenceAppID    string
	PresenceInterval time.Duration
	// ShutdownGrace bounds the drain after SIGTERM (WS_SHUTDOWN_GRACE, 10s).
	ShutdownGrace time.Duration
	// Hub holds the limits: WS_ALLOWED_ORIGINS (comma list),
	// WS_MAX_CONNS_PER_USER, WS_QUEUE_BYTES, WS_WRITE_TIMEOUT,
	// WS_PING_INTERVAL, WS_RATE, WS_BURST, WS_LIVE_HOLD, WS_BATCH_WINDOW,
	// WS_MAX_BATCH, WS_TYPING_EVERY. Unset ones take hub.DefaultConfig.
	Hub hub.Config
}

// loadConfig reads Config through getenv, so tests pass their own
// environment instead of changing the process's (envconfig reads only the
// process environment, hence the explicit list, as in the message service).
func loadConfig(getenv func(string) string) (Config, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	var errs []error
	dur := func(key string, def time.Duration) time.Duration {
		v := get(key, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s %q is not a non-negative duration", key, v))
		}
		return d
	}
	num := func(key string, def int) int {
		v := get(key, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s %q is not a positive integer", key, v))
		}
		return n
	}
	d := hub.DefaultConfig()
	cfg := Config{
		Host:          get("APP_HOST", "0.0.0.0"),
		Port:          get("APP_PORT", "8081"),
		DaprHTTPPort:  get("DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort:  get("DAPR_GRPC_PORT", "50001"),
		Issuer:        get("AUTH_ISSUER", "papo"),
		Audience:      get("AUTH_AUDIENCE", "papo"),
		Leeway:        dur("AUTH_LEEWAY", 30*time.Second),
		AuthAppID:     get("WS_AUTH_APP_ID", "auth"),
		MessageAppID:  get("WS_MESSAGE_APP_ID", "message"),
		Replica:       get("APP_REPLICA", hostname()),
		PresenceAppID: get("WS_PRESENCE_APP_ID", "presence"),
		ShutdownGrace: dur("WS_SHUTDOWN_GRACE", 10*time.Second),
	}
	cfg.PresenceInterval = dur("WS_PRESENCE_HEARTBEAT", 8*time.Second)
	if cfg.PresenceInterval == 0 {
		errs = append(errs, fmt.Errorf("WS_PRESENCE_HEARTBEAT must be positive"))
	}
	h := d
	for _, o := range strings.Split(get("WS_ALLOWED_ORIGINS", ""), ",") {
		if o = strings.TrimSpace(o); o != "" {
			h.AllowedOrigins = append(h.AllowedOrigins, o)
		}
	}
	h.MaxConnsPerUser = num("WS_MAX_CONNS_PER_USER", d.MaxConnsPerUser)
	h.QueueBytes = num("WS_QUEUE_BYTES", d.QueueBytes)
	h.WriteTimeout = dur("WS_WRITE_TIMEOUT", d.WriteTimeout)
	h.PingInterval = dur("WS_PING_INTERVAL", d.PingInterval)
	h.PongWait = max(dur("WS_PONG_WAIT", d.PongWait), h.PingInterval+5*time.Second)
	h.Burst = num("WS_BURST", d.Burst)
	h.LiveHold = dur("WS_LIVE_HOLD", d.LiveHold)
	h.BatchWindow = dur("WS_BATCH_WINDOW", 0)
	h.MaxBatch = num("WS_MAX_BATCH", d.MaxBatch)
	h.TypingEvery = dur("WS_TYPING_EVERY", d.TypingEvery)
	if v := get("WS_RATE", ""); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			errs = append(errs, fmt.Errorf("WS_RATE %q is not a positive number", v))
		}
		h.Rate = r
	}
	cfg.Hub = h
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	for key, port := range map[string]string{"APP_PORT": cfg.Port, "DAPR_HTTP_PORT": cfg.DaprHTTPPort, "DAPR_GRPC_PORT": cfg.DaprGRPCPort} {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("%s %q is not a port", key, port))
		}
	}
	return cfg, errors.Join(errs...)
}

// run serves /ws until ctx is done, then shuts down in order: stop
// accepting, close every socket with 1001 going away, drain (at most
// ShutdownGrace), stop the subscriptions, close the sidecar client.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "ws")

	dc, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer dc.Close()
	inv := invoke.New(cfg.DaprHTTPPort)
	revoked := authn.NewRevocations()
	keys := authn.NewRemoteKeys(inv, cfg.AuthAppID, authn.RemoteKeysOptions{})
	verifier := authn.NewVerifier(authn.Config{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway}, keys,
		authn.WithRevocations(revoked))

	var h *hub.Hub
	reporter := presence.New(presence.Config{Replica: cfg.Replica, AppID: cfg.PresenceAppID, Interval: cfg.PresenceInterval},
		inv, func() map[string]int { return h.LiveUsers() }, log)
	h = hub.New(cfg.Hub, hub.Deps{
		Verifier:  verifier,
		Sessions:  upstream.Sessions{Invoke: inv, AppID: cfg.AuthAppID},
		Messages:  upstream.Messages{Invoke: inv, AppID: cfg.MessageAppID},
		Publisher: bus.Publisher{Client: dc},
		Log:       log,
		Presence:  reporter,
	})
	roomEvents := &bus.Subscription{Client: dc, PubSub: events.Fanout, Topic: events.TopicRoomEvents, Log: log}
	signals := &bus.Subscription{Client: dc, PubSub: events.Fanout, Topic: events.TopicSignals, Log: log}

	probe := sidecar.NewProbe(cfg.DaprHTTPPort)
	subscribed := func(s *bus.Subscription) httpapi.Check {
		return func(context.Context) error {
			if !s.Active() {
				return fmt.Errorf("not subscribed to %s/%s", s.PubSub, s.Topic)
			}
			return nil
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpapi.Healthz())
	mux.Handle("GET /readyz", httpapi.Readyz(map[string]httpapi.Check{
		"sidecar":      probe.Check,
		"room.events":  subscribed(roomEvents),
		"room.signals": subscribed(signals),
	}))
	// /ws stays outside the access log: its response writer must remain
	// an http.Hijacker for the upgrade. The hub logs sockets itself.
	handler := http.NewServeMux()
	handler.Handle("GET /ws", httpapi.RequestIDs(h))
	handler.Handle("/", httpapi.RequestIDs(httpapi.AccessLog(log)(httpapi.Recover(log)(mux))))

	// Listen before touching the sidecar: daprd waits for the app port.
	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), handler, log)
	if err != nil {
		return err
	}
	log.Info("ws listening", "url", srv.URL())

	subCtx, stopSubs := context.WithCancel(context.Background())
	var subs sync.WaitGroup
	subs.Add(4)
	// The reporter stops with the subscriptions, after the drain, so the
	// disconnects of a graceful shutdown still reach presence.
	go func() { defer subs.Done(); reporter.Run(subCtx) }()
	go func() { defer subs.Done(); roomEvents.Run(subCtx, bus.JSON(h.RoomEvents)) }()
	go func() { defer subs.Done(); signals.Run(subCtx, bus.JSON(h.Signals)) }()
	go func() {
		defer subs.Done()
		_ = authn.FollowRevocations(subCtx, dc, revoked, log, h.SessionRevoked)
	}()

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
	return err
}

// hostname names the replica when APP_REPLICA is unset (a pod's name).
func hostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "ws"
	}
	return name
}
