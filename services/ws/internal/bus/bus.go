// Package bus adapts Dapr pub/sub (through the go-sdk client) to the hub:
// a Publisher, and streaming subscriptions that decode each message and
// hand it to a hub method. It may depend on api and platform only.
package bus

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	json "github.com/goccy/go-json"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/telemetry"
)

// Publisher publishes JSON payloads through the sidecar.
type Publisher struct {
	Client dapr.Client
	// Metrics, when set, times every publish.
	Metrics *telemetry.Publishes
}

// Publish implements hub.Publisher.
func (p Publisher) Publish(ctx context.Context, pubsub, topic, key string, data []byte) error {
	opts := []dapr.PublishEventOption{dapr.PublishEventWithContentType("application/json")}
	if key != "" {
		opts = append(opts, dapr.PublishEventWithMetadata(map[string]string{events.PartitionKeyMetadata: key}))
	}
	start := time.Now()
	err := p.Client.PublishEvent(ctx, pubsub, topic, data, opts...)
	p.Metrics.Observe(topic, start, err)
	if err != nil {
		return fmt.Errorf("publish to %s/%s: %w", pubsub, topic, err)
	}
	return nil
}

// Handler consumes one decoded payload.
type Handler[T any] func(T)

// Subscription is one streaming subscription kept open until its context
// ends: it resubscribes after a failure (the sidecar restarting, or not up
// yet) with a capped backoff.
type Subscription struct {
	Client dapr.Client
	PubSub string
	Topic  string
	Log    *slog.Logger
	// Reopened, when set, is called each time the subscription is open
	// again after a break: what was published meanwhile is lost to it.
	Reopened func()

	active atomic.Bool
}

// Active reports whether the subscription is open now (for /readyz).
func (s *Subscription) Active() bool { return s.active.Load() }

// Run consumes messages until ctx ends, passing each raw payload to
// handle. A payload handle refuses (error) is dropped: fan-out messages
// are not worth a redelivery loop, and the gap fill recovers events.
func (s *Subscription) Run(ctx context.Context, handle func([]byte) error) {
	backoff := 100 * time.Millisecond
	failures := 0
	opened := false
	for ctx.Err() == nil {
		sub, err := s.Client.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: s.PubSub, Topic: s.Topic})
		if err != nil {
			failures++
			s.Log.Log(ctx, sidecar.RetryLevel(failures), "subscribe failed", "pubsub", s.PubSub, "topic", s.Topic, "err", err)
			if !wait(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		failures = 0
		s.active.Store(true)
		s.Log.Info("subscribed", "pubsub", s.PubSub, "topic", s.Topic, "again", opened)
		if opened && s.Reopened != nil {
			s.Reopened()
		}
		opened = true
		err = s.consume(ctx, sub, handle)
		s.active.Store(false)
		_ = sub.Close()
		if ctx.Err() != nil {
			return
		}
		s.Log.Warn("subscription ended; resubscribing", "pubsub", s.PubSub, "topic", s.Topic, "err", err)
		backoff = 100 * time.Millisecond
		if !wait(ctx, backoff) {
			return
		}
	}
}

func (s *Subscription) consume(ctx context.Context, sub *dapr.Subscription, handle func([]byte) error) error {
	stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
	defer stop()
	for {
		msg, err := sub.Receive()
		if err != nil {
			return err
		}
		if err := handle(msg.RawData); err != nil {
			s.Log.Warn("dropping malformed message", "topic", s.Topic, "id", msg.ID, "err", err)
			if err := msg.Drop(); err != nil {
				return err
			}
			continue
		}
		if err := msg.Success(); err != nil {
			return err
		}
	}
}

// JSON adapts a typed handler to raw payloads.
func JSON[T any](h Handler[T]) func([]byte) error {
	return func(b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode %T: %w", v, err)
		}
		h(v)
		return nil
	}
}

func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
