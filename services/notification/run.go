package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/platform/telemetry"
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
// environment once (settings.Base plus the variables below).
type Config struct {
	settings.Base

	// Window is the coalescing window.
	Window time.Duration `envconfig:"NOTIFICATION_WINDOW" default:"60s"`
	// DedupeTTL is how long redeliveries are recognised.
	DedupeTTL time.Duration `envconfig:"NOTIFICATION_DEDUPE_TTL" default:"24h"`
	// PushAttempts and PushBackoff bound the app's retries of a push the
	// provider refused with 429 or 5xx.
	PushAttempts int           `envconfig:"NOTIFICATION_PUSH_ATTEMPTS" default:"5"`
	PushBackoff  time.Duration `envconfig:"NOTIFICATION_PUSH_BACKOFF" default:"1s"`

	// DeviceRefresh is how often each replica re-reads the whole device
	// index, which bounds how long a lost devices.changed notice leaves it
	// behind.
	DeviceRefresh time.Duration `envconfig:"NOTIFICATION_DEVICE_REFRESH" default:"1m"`
	// DeviceFallback reads, once per replica, the device record of a user
	// missing from the index, for devices registered before the index
	// existed.
	DeviceFallback bool `envconfig:"NOTIFICATION_DEVICE_FALLBACK" default:"true"`
	// RoomTTL and RoomCache bound the rooms (members, name, kind) cached.
	RoomTTL   time.Duration `envconfig:"NOTIFICATION_ROOM_TTL" default:"30s"`
	RoomCache int           `envconfig:"NOTIFICATION_ROOM_CACHE" default:"10000"`

	FCMProject      string `envconfig:"NOTIFICATION_FCM_PROJECT" default:"papo"`
	VAPIDPublicKey  string `envconfig:"NOTIFICATION_VAPID_PUBLIC_KEY"`
	VAPIDPrivateKey string `envconfig:"NOTIFICATION_VAPID_PRIVATE_KEY"`
	VAPIDSubject    string `envconfig:"NOTIFICATION_VAPID_SUBJECT" default:"mailto:admin@papo.invalid"`

	// Where the collaborators answer.
	MessageApp   string `envconfig:"NOTIFICATION_MESSAGE_APP" default:"message"`
	PresenceApp  string `envconfig:"NOTIFICATION_PRESENCE_APP" default:"presence"`
	PresencePath string `envconfig:"NOTIFICATION_PRESENCE_PATH" default:"/internal/v1/presence"`
	AuthApp      string `envconfig:"NOTIFICATION_AUTH_APP" default:"auth"`
	UsersPath    string `envconfig:"NOTIFICATION_USERS_PATH" default:"/internal/v1/users"`
}

// defaults is Config before the environment is read: the service
// listens on 8086 unless APP_PORT says otherwise.
func defaults() Config { return Config{Base: settings.Base{Port: "8086"}} }

// Validate implements settings.Validator.
func (c Config) Validate() error {
	switch {
	case c.Window < 100*time.Millisecond || c.Window > time.Hour:
		return fmt.Errorf("NOTIFICATION_WINDOW must be between 100ms and 1h")
	case c.DedupeTTL < c.Window:
		return fmt.Errorf("NOTIFICATION_DEDUPE_TTL must be at least NOTIFICATION_WINDOW")
	case c.PushAttempts < 1 || c.PushAttempts > 20:
		return fmt.Errorf("NOTIFICATION_PUSH_ATTEMPTS must be between 1 and 20")
	case c.DeviceRefresh < time.Second || c.DeviceRefresh > time.Hour:
		return fmt.Errorf("NOTIFICATION_DEVICE_REFRESH must be between 1s and 1h")
	case c.RoomTTL < time.Second || c.RoomTTL > 10*time.Minute:
		return fmt.Errorf("NOTIFICATION_ROOM_TTL must be between 1s and 10m")
	case c.RoomCache < 1 || c.RoomCache > 1_000_000:
		return fmt.Errorf("NOTIFICATION_ROOM_CACHE must be between 1 and 1000000")
	case (c.VAPIDPublicKey == "") != (c.VAPIDPrivateKey == ""):
		return fmt.Errorf("NOTIFICATION_VAPID_PUBLIC_KEY and NOTIFICATION_VAPID_PRIVATE_KEY must be set together")
	}
	return nil
}

// run starts the service and blocks until ctx is done.
func run(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error {
	return service.Run(ctx, getenv, stdout, "notification", defaults(), serve)
}

// serve builds the service on rt and serves until ctx is done.
func serve(ctx context.Context, rt *service.Runtime, cfg Config) error {
	log, tel, client := rt.Log, rt.Tel, rt.Sidecar
	inv := rt.Invoke
	pub := rt.Publisher()
	probe := rt.Probe
	store := rt.Store(storeName)
	// Sessions revoked on sessions.revoked are refused at once; the
	// follower stops with ctx, and run waits for it before closing client.
	verifier, stopFollowing, err := authn.StartServiceVerifier(ctx, cfg.Base, inv, client, log, authn.ServiceOptions{AuthApp: cfg.AuthApp})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer stopFollowing()

	index := device.NewIndex(store, device.IndexOptions{
		// Every replica hears of a change through the fan-out component.
		Announcer: pubsub.NewTopic[events.DevicesChanged](pub, events.PubSub, events.TopicDevicesChanged),
		Fallback:  cfg.DeviceFallback,
		Log:       log,
	})
	devices := device.NewRegistry(store, index)
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
		DeadLetters: deadLetters{pubsub.NewTopic[deadPush](pub, events.PubSub, events.TopicNotificationsDeadLetter)},
		Log:         log,
		Metrics:     notify.NewMetrics(tel.Registry),
	}, notify.Options{
		Window:        cfg.Window,
		DedupeTTL:     cfg.DedupeTTL,
		Attempts:      cfg.PushAttempts,
		Backoff:       cfg.PushBackoff,
		RoomTTL:       cfg.RoomTTL,
		RoomCacheSize: cfg.RoomCache,
	})

	handler := server.New(server.Deps{
		Log:            log,
		Verifier:       verifier,
		Devices:        devices,
		Modes:          modes,
		WebPushKey:     cfg.VAPIDPublicKey,
		Events:         engine.Handle,
		DevicesChanged: index.Changed,
		Checks:         map[string]httpapi.Check{"sidecar": probe.Check, storeName: store.Ping},
	})
	srv, err := httpapi.ListenApp(cfg.Addr(), cfg.ProbeAddr(), cfg.AppAPIToken, telemetry.HTTP(tel.Traces, nil)(handler), log)
	if err != nil {
		return err
	}
	log.Info("notification listening", "url", srv.URL(), "window", cfg.Window.String())

	// Ordered shutdown: stop taking events (the server), then let the
	// flushes in flight finish and stop refreshing the device index.
	runCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone, indexDone := make(chan error, 1), make(chan struct{})
	go func() { engineDone <- engine.Run(runCtx) }()
	go func() { defer close(indexDone); index.Run(runCtx, cfg.DeviceRefresh) }()
	serveErr := srv.Serve(ctx, 10*time.Second)
	stopEngine()
	if err := <-engineDone; err != nil && serveErr == nil {
		serveErr = err
	}
	<-indexDone
	return serveErr
}

// deadLetters publishes pushes that failed every retry to the
// notifications dead-letter topic, where an operator can see and replay
// them.
type deadLetters struct {
	topic pubsub.Topic[deadPush]
}

// deadPush is a push on the dead-letter topic.
type deadPush struct {
	Kind         string            `json:"kind"` // "push"
	DeviceID     string            `json:"device_id"`
	Platform     string            `json:"platform"`
	Notification push.Notification `json:"notification"`
	Reason       string            `json:"reason"`
}

func (d deadLetters) DeadLetter(ctx context.Context, dev device.Device, n push.Notification, reason error) error {
	return d.topic.Publish(ctx, deadPush{Kind: "push", DeviceID: dev.ID, Platform: dev.Platform, Notification: n, Reason: reason.Error()})
}
