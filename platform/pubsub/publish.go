package pubsub

import (
	"context"
	"fmt"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	json "github.com/goccy/go-json"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/telemetry"
)

// Sidecar is the part of the Dapr client a Publisher uses; dapr.Client
// implements it.
type Sidecar interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data any, opts ...dapr.PublishEventOption) error
}

// Publisher publishes JSON payloads through the sidecar. It is the only
// code in papo that calls PublishEvent.
//
// A payload goes out as opaque bytes (ContentType): the sidecar still
// wraps it in a CloudEvent, with its id and traceparent, but carries it
// as data_base64 instead of parsing the JSON into a generic tree and
// encoding it again — on publish, in JetStream's publish (which reads the
// event's id), in every subscriber's sidecar, and in the SDK's streaming
// receive. Subscribers get the payload's bytes unchanged either way
// (Stream reads the decoded data, a delivered subscription data_base64).
type Publisher struct {
	client  Sidecar
	metrics *telemetry.Publishes
}

// NewPublisher returns a Publisher through client. metrics, when not nil,
// times every publish.
func NewPublisher(client Sidecar, metrics *telemetry.Publishes) *Publisher {
	return &Publisher{client: client, metrics: metrics}
}

// Publish encodes payload as JSON and publishes it to topic on the
// component. A payload that is an events.Keyed carries its partition key
// (events.PublishMetadata), which keeps a room's payloads in order on a
// broker that partitions the topic.
func (p *Publisher) Publish(ctx context.Context, component, topic string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode payload for %s: %w", topic, err)
	}
	return p.publish(ctx, component, topic, b, events.PublishMetadata(payload))
}

// PublishJSON publishes an encoded JSON payload to topic on the
// component; key, when not empty, is its partition key.
func (p *Publisher) PublishJSON(ctx context.Context, component, topic, key string, data []byte) error {
	var md map[string]string
	if key != "" {
		md = map[string]string{events.PartitionKeyMetadata: key}
	}
	return p.publish(ctx, component, topic, data, md)
}

// ContentType is the CloudEvent data content type of every publish: bytes
// the sidecars pass through (see Publisher). Dapr 1.14 treats a JSON
// content type as a document to parse and re-encode at every hop.
const ContentType = "application/octet-stream"

func (p *Publisher) publish(ctx context.Context, component, topic string, data []byte, md map[string]string) error {
	opts := []dapr.PublishEventOption{dapr.PublishEventWithContentType(ContentType)}
	if md != nil {
		opts = append(opts, dapr.PublishEventWithMetadata(md))
	}
	start := time.Now()
	err := p.client.PublishEvent(ctx, component, topic, data, opts...)
	p.metrics.Observe(topic, start, err)
	if err != nil {
		return fmt.Errorf("publish to %s/%s: %w", component, topic, err)
	}
	return nil
}

// On returns the publisher bound to one component.
func (p *Publisher) On(component string) Component {
	return Component{p: p, component: component}
}

// Component publishes to the topics of one pub/sub component.
type Component struct {
	p         *Publisher
	component string
}

// Publish publishes payload to topic (Publisher.Publish).
func (c Component) Publish(ctx context.Context, topic string, payload any) error {
	return c.p.Publish(ctx, c.component, topic, payload)
}

// Topic is a typed publisher to one topic of one component.
type Topic[T any] struct {
	p                *Publisher
	component, topic string
}

// NewTopic returns the publisher of Ts to topic on the component.
func NewTopic[T any](p *Publisher, component, topic string) Topic[T] {
	return Topic[T]{p: p, component: component, topic: topic}
}

// Publish publishes v (Publisher.Publish).
func (t Topic[T]) Publish(ctx context.Context, v T) error {
	return t.p.Publish(ctx, t.component, t.topic, v)
}
