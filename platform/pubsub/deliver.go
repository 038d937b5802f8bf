package pubsub

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"

	json "github.com/goccy/go-json"
)

// SubscribePath is where the sidecar asks an app for its subscriptions
// (Dapr's programmatic subscriptions).
const SubscribePath = "/dapr/subscribe"

// maxDelivery bounds one delivery's body: a room event batch carries
// every text of a commit round.
const maxDelivery = 4 << 20

// Subscription is one topic the sidecar delivers to the app by posting to
// Route. Subscribe makes one; Mount serves them.
type Subscription struct {
	PubSub, Topic, Route string
	// DeadLetterTopic, when set, receives what the sidecar gave up
	// redelivering.
	DeadLetterTopic string

	handle    func(ctx context.Context, data []byte) error
	malformed func(ctx context.Context, data []byte, err error) error
}

// Option tunes a Subscription.
type Option func(*Subscription)

// WithDeadLetter names the subscription's dead-letter topic.
func WithDeadLetter(topic string) Option {
	return func(s *Subscription) { s.DeadLetterTopic = topic }
}

// WithMalformed has f keep a malformed payload (it gets the raw payload
// and why) instead of dropping it: the message is acknowledged once f
// kept it, and retried when f fails.
func WithMalformed(f func(ctx context.Context, data []byte, err error) error) Option {
	return func(s *Subscription) { s.malformed = f }
}

// Subscribe describes the delivered subscription of h to topic on the
// component pubsub, at route.
func Subscribe[T any](pubsub, topic, route string, h Handler[T], opts ...Option) Subscription {
	s := Subscription{PubSub: pubsub, Topic: topic, Route: route, handle: JSON(h)}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// settle runs the handler on one payload and decides by Outcome, giving a
// malformed payload to the subscription's malformed hook first.
func (s Subscription) settle(ctx context.Context, log *slog.Logger, id string, data []byte) Status {
	err := s.handle(ctx, data)
	st := Outcome(err)
	if st == Drop && s.malformed != nil {
		log.WarnContext(ctx, "keeping malformed message", "topic", s.Topic, "event_id", id, "err", err)
		if err = s.malformed(ctx, data, err); err != nil {
			st = Retry
		} else {
			st = Ack
		}
	}
	switch st {
	case Drop:
		log.WarnContext(ctx, "dropping malformed message", "topic", s.Topic, "event_id", id, "err", err)
	case Retry:
		log.WarnContext(ctx, "message will be redelivered", "topic", s.Topic, "event_id", id, "err", err)
	}
	return st
}

// Router is where Mount adds its routes; chi.Router implements it.
type Router interface {
	Method(method, pattern string, h http.Handler)
}

// Mount serves subs on r: the subscription list at SubscribePath and
// each delivery route, which decodes the CloudEvent, runs the handler and
// answers the sidecar by Outcome.
func Mount(r Router, log *slog.Logger, subs ...Subscription) {
	list := make([]subscriptionEntry, len(subs))
	for i, s := range subs {
		list[i] = subscriptionEntry{PubsubName: s.PubSub, Topic: s.Topic, Route: s.Route, DeadLetterTopic: s.DeadLetterTopic}
	}
	r.Method(http.MethodGet, SubscribePath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		answer(w, list)
	}))
	for _, s := range subs {
		r.Method(http.MethodPost, s.Route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			data, id, err := deliveryData(w, r)
			if err != nil {
				log.WarnContext(r.Context(), "dropping malformed delivery", "topic", s.Topic, "err", err)
				answer(w, map[string]Status{"status": Drop})
				return
			}
			answer(w, map[string]Status{"status": s.settle(r.Context(), log, id, data)})
		}))
	}
}

// subscriptionEntry is one entry of the SubscribePath list.
type subscriptionEntry struct {
	PubsubName      string `json:"pubsubname"`
	Topic           string `json:"topic"`
	Route           string `json:"route"`
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
}

// cloudEvent is the part of a Dapr delivery we read.
type cloudEvent struct {
	ID         string          `json:"id"`
	Data       json.RawMessage `json:"data"`
	DataBase64 string          `json:"data_base64"`
}

// deliveryData returns the payload and id of a delivery.
func deliveryData(w http.ResponseWriter, r *http.Request) ([]byte, string, error) {
	var ce cloudEvent
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDelivery))
	if err == nil {
		err = json.Unmarshal(body, &ce)
	}
	if err != nil {
		return nil, "", err
	}
	if ce.DataBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		return b, ce.ID, err
	}
	return ce.Data, ce.ID, nil
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}
