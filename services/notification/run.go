package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/statestore/daprstore"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
	"github.com/papochat/papo/services/notification/internal/notify"
	"github.com/papochat/papo/services/notification/internal/push"
	"github.com/papochat/papo/services/notification/internal/server"
	"github.com/papochat/papo/services/notification/internal/upstream"
)

// Component names this service uses.
const (
	storeName   = "notificationstore"
	bindingName = "push"
)

// Config is the notification service's configuration, read from the
// environment once.
type Config struct {
	Host         string
	Port         string
	DaprHTTPPort string
	DaprGRPCPort string
	LogLevel     slog.Level
	Issuer       string
	Audience     string
	Leeway       time.Duration

	// Window is the coalescing window (NOTIFICATION_WINDOW).
	Window time.Duration
	// DedupeTTL is how long redeliveries are recognised.
	DedupeTTL time.Duration
	// PushAttempts and PushBackoff bound the app's retries of a push the
	// provider refused with 429 or 5xx.
	PushAttempts int
	PushBackoff  time.Duration

	FCMProject      string
	VAPIDPublicKey  string
	VAPIDPrivateKey string
	VAPIDSubject    string

	// Where the collaborators answer.
	MessageApp   string
	PresenceApp  string
	PresencePath string
	AuthApp      string
	UsersPath    string
}

func loadConfig(getenv func(string) string) (Config, error) {
	e := env{getenv: getenv}
	cfg := Config{
		Host:            e.str("APP_HOST", "0.0.0.0"),
		Port:            e.str("APP_PORT", "8086"),
		DaprHTTPPort:    e.str("DAPR_HTTP_PORT", "3500"),
		DaprGRPCPort:    e.str("DAPR_GRPC_PORT", "50001"),
		Issuer:          e.str("AUTH_ISSUER", "papo"),
		Audience:        e.str("AUTH_AUDIENCE", "papo"),
		Leeway:          e.dur("AUTH_LEEWAY", 30*time.Second),
		Window:          e.dur("NOTIFICATION_WINDOW", 60*time.Second),
		DedupeTTL:       e.dur("NOTIFICATION_DEDUPE_TTL", 24*time.Hour),
		PushAttempts:    e.num("NOTIFICATION_PUSH_ATTEMPTS", 5),
		PushBackoff:     e.dur("NOTIFICATION_PUSH_BACKOFF", time.Second),
		FCMProject:      e.str("NOTIFICATION_FCM_PROJECT", "papo"),
		VAPIDPublicKey:  e.str("NOTIFICATION_VAPID_PUBLIC_KEY", ""),
		VAPIDPrivateKey: e.str("NOTIFICATION_VAPID_PRIVATE_KEY", ""),
		VAPIDSubject:    e.str("NOTIFICATION_VAPID_SUBJECT", "mailto:admin@papo.invalid"),
		MessageApp:      e.str("NOTIFICATION_MESSAGE_APP", "message"),
		PresenceApp:     e.str("NOTIFICATION_PRESENCE_APP", "presence"),
		PresencePath:    e.str("NOTIFICATION_PRESENCE_PATH", "/internal/v1/presence"),
		AuthApp:         e.str("NOTIFICATION_AUTH_APP", "auth"),
		UsersPath:       e.str("NOTIFICATION_USERS_PATH", "/internal/v1/users"),
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(e.str("LOG_LEVEL", "info"))); err != nil {
		e.errs = append(e.errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	if len(e.errs) > 0 {
		return Config{}, e.errs[0]
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	switch {
	case c.Window < 100*time.Millisecond || c.Window > time.Hour:
		return fmt.Errorf("NOTIFICATION_WINDOW must be between 100ms and 1h")
	case c.DedupeTTL < c.Window:
		return fmt.Errorf("NOTIFICATION_DEDUPE_TTL must be at least NOTIFICATION_WINDOW")
	case c.PushAttempts < 1 || c.PushAttempts > 20:
		return fmt.Errorf("NOTIFICATION_PUSH_ATTEMPTS must be between 1 and 20")
	case (c.VAPIDPublicKey == "") != (c.VAPIDPrivateKey == ""):
		return fmt.Errorf("NOTIFICATION_VAPID_PUBLIC_KEY and NOTIFICATION_VAPID_PRIVATE_KEY must be set together")
	}
	return nil
}

// env reads typed values, collecting malformed ones.
type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) str(key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func (e *env) dur(key string, def time.Duration) time.Duration {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %w", key, err))
	}
	return d
}

func (e *env) num(key string, def int) int {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %w", key, err))
	}
	return n
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "notification")

	// The SDK client connects lazily: the HTTP server must listen before
	// the sidecar, which waits for the app's port, is up.
	client, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer client.Close()
	inv := invoke.New(cfg.DaprHTTPPort)
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)
	store := daprstore.New(client, storeName)
	keys := authn.NewRemoteKeys(inv, cfg.AuthApp, authn.RemoteKeysOptions{})
	verifier := authn.NewVerifier(authn.Config{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway}, keys)

	devices := device.NewRegistry(store)
	modes := mode.NewStore(store)
	sender := push.NewSender(push.NewDaprBinding(client, bindingName), push.Options{
		FCMProject:      cfg.FCMProject,
		VAPIDPublicKey:  cfg.VAPIDPublicKey,
		VAPIDPrivateKey: cfg.VAPIDPrivateKey,
		VAPIDSubject:    cfg.VAPIDSubject,
	})
	engine := notify.New(notify.Deps{
		Store:       store,
		Rooms:       upstream.Rooms{Invoke: inv, AppID: cfg.MessageApp},
		Presence:    upstream.Presence{Invoke: inv, AppID: cfg.PresenceApp, Path: cfg.PresencePath},
		Users:       upstream.NewUsers(inv, cfg.AuthApp, cfg.UsersPath, 10_000, time.Hour),
		Devices:     devices,
		Modes:       modes,
		Pusher:      sender,
		DeadLetters: deadLetters{client: client},
		Log:         log,
	}, notify.Options{
		Window:    cfg.Window,
		DedupeTTL: cfg.DedupeTTL,
		Attempts:  cfg.PushAttempts,
		Backoff:   cfg.PushBackoff,
	})

	handler := server.New(server.Deps{
		Log:        log,
		Verifier:   verifier,
		Devices:    devices,
		Modes:      modes,
		WebPushKey: cfg.VAPIDPublicKey,
		Events:     engine.Handle,
		Checks:     map[string]httpapi.Check{"sidecar": probe.Check, storeName: store.Ping},
	})
	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), handler, log)
	if err != nil {
		return err
	}
	log.Info("notification listening", "url", srv.URL(), "window", cfg.Window.String())

	// Ordered shutdown: stop taking events (the server), then let the
	// flushes in flight finish.
	runCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(runCtx) }()
	serveErr := srv.Serve(ctx, 10*time.Second)
	stopEngine()
	if err := <-engineDone; err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

// deadLetters publishes pushes that failed every retry to the
// notifications dead-letter topic, where an operator can see and replay
// them.
type deadLetters struct{ client dapr.Client }

func (d deadLetters) DeadLetter(ctx context.Context, dev device.Device, n push.Notification, reason error) error {
	b, err := json.Marshal(map[string]any{
		"kind": "push", "device_id": dev.ID, "platform": dev.Platform, "notification": n, "reason": reason.Error(),
	})
	if err != nil {
		return err
	}
	return d.client.PublishEvent(ctx, events.PubSub, events.TopicNotificationsDeadLetter, b,
		dapr.PublishEventWithContentType("application/json"))
}
