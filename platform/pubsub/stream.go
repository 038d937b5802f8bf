package pubsub

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/wait"
)

// Streamer opens a streaming subscription; dapr.Client implements it.
type Streamer interface {
	Subscribe(ctx context.Context, opts dapr.SubscriptionOptions) (*dapr.Subscription, error)
}

// Stream is one streaming subscription kept open until its context ends:
// it resubscribes after a failure (the sidecar restarting, or not up yet)
// with a capped backoff. Dapr allows one streaming subscription per
// component and topic per sidecar, so a service runs one Stream per topic
// and fans out from its handler.
type Stream struct {
	Client Streamer
	PubSub string
	Topic  string
	Log    *slog.Logger
	// Reopened, when set, is called each time the subscription is open
	// again after a break: what was published meanwhile is lost to it.
	Reopened func()

	active atomic.Bool
}

// Active reports whether the subscription is open now (for /readyz).
func (s *Stream) Active() bool { return s.active.Load() }

// Run consumes messages until ctx ends, passing each raw payload to
// handle (JSON adapts a typed Handler) and settling it by Outcome.
func (s *Stream) Run(ctx context.Context, handle func(ctx context.Context, data []byte) error) {
	backoff := 100 * time.Millisecond
	failures := 0
	opened := false
	for ctx.Err() == nil {
		sub, err := s.Client.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: s.PubSub, Topic: s.Topic})
		if err != nil {
			// A sidecar that has just started refuses streams for a
			// moment; only a failure that persists is worth a warning.
			failures++
			s.Log.Log(ctx, sidecar.RetryLevel(failures), "subscribe failed", "pubsub", s.PubSub, "topic", s.Topic, "err", err, "in", backoff)
			if !wait.For(ctx, backoff) {
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
		if !wait.For(ctx, backoff) {
			return
		}
	}
}

func (s *Stream) consume(ctx context.Context, sub *dapr.Subscription, handle func(context.Context, []byte) error) error {
	// Receive does not watch ctx; closing the stream unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
	defer stop()
	for {
		msg, err := sub.Receive()
		if err != nil {
			return err
		}
		err = handle(ctx, msg.RawData)
		switch Outcome(err) {
		case Ack:
			err = msg.Success()
		case Drop:
			s.Log.Warn("dropping malformed message", "topic", s.Topic, "id", msg.ID, "err", err)
			err = msg.Drop()
		default:
			s.Log.Warn("message will be redelivered", "topic", s.Topic, "id", msg.ID, "err", err)
			err = msg.Retry()
		}
		if err != nil {
			return err
		}
	}
}
