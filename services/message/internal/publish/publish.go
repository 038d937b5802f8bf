// Package publish provides the message service's publishers: Dapr, which
// publishes through the sidecar to the competing-consumer pub/sub
// component, and Memory, which records payloads for tests.
package publish

import (
	"context"
	"fmt"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	json "github.com/goccy/go-json"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/telemetry"
)

// Dapr publishes JSON payloads to one pub/sub component through the sidecar.
type Dapr struct {
	client  dapr.Client
	pubsub  string
	metrics *telemetry.Publishes
}

// WithMetrics times every publish in m.
func (d *Dapr) WithMetrics(m *telemetry.Publishes) *Dapr {
	d.metrics = m
	return d
}

// NewDapr returns a publisher to the component named pubsub.
func NewDapr(client dapr.Client, pubsub string) *Dapr {
	return &Dapr{client: client, pubsub: pubsub}
}

// Publish implements room.Publisher.
func (d *Dapr) Publish(ctx context.Context, topic string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode payload for %s: %w", topic, err)
	}
	opts := []dapr.PublishEventOption{dapr.PublishEventWithContentType("application/json")}
	// A room's submissions and announcements carry the room as their
	// partition key, which keeps them in order on Kafka.
	if md := events.PublishMetadata(payload); md != nil {
		opts = append(opts, dapr.PublishEventWithMetadata(md))
	}
	start := time.Now()
	err = d.client.PublishEvent(ctx, d.pubsub, topic, b, opts...)
	d.metrics.Observe(topic, start, err)
	if err != nil {
		return fmt.Errorf("publish to %s/%s: %w", d.pubsub, topic, err)
	}
	return nil
}

// Message is one payload a Memory publisher received, as JSON.
type Message struct {
	Topic string
	Data  []byte
}

// Memory records published payloads in order. Fail, when set, makes
// Publish fail with its error.
type Memory struct {
	mu   sync.Mutex
	msgs []Message
	fail error
}

// Publish implements room.Publisher.
func (m *Memory) Publish(_ context.Context, topic string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode payload for %s: %w", topic, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.msgs = append(m.msgs, Message{Topic: topic, Data: b})
	return nil
}

// SetFailure makes every later Publish fail with err (nil restores it).
func (m *Memory) SetFailure(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// Messages returns the payloads published to topic so far.
func (m *Memory) Messages(topic string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	for _, msg := range m.msgs {
		if msg.Topic == topic {
			out = append(out, msg.Data)
		}
	}
	return out
}
