package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	contribpubsub "github.com/dapr/components-contrib/pubsub"
	"github.com/dapr/dapr/pkg/config"
	rtpubsub "github.com/dapr/dapr/pkg/runtime/pubsub"
	"github.com/dapr/kit/logger"
)

// TestOpaquePayloadsCrossTheSidecarsUnparsed pins what papo's publisher
// (platform/pubsub, content type application/octet-stream) relies on in
// this daprd: the payload travels in the CloudEvent as data_base64 and
// reaches a streaming subscriber byte for byte, with the event's id and
// traceparent kept. A JSON content type instead has the sidecar parse the
// payload into a generic tree on publish and on every delivery and encode
// it again (here seen as the keys re-sorted) — the CPU the switch saves.
func TestOpaquePayloadsCrossTheSidecarsUnparsed(t *testing.T) {
	payload := []byte(`{"room_id":"r1","events":[{"seq":2,"text":"héllo \u2028"}],"acks":null}`)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	deliver := func(contentType string) ([]byte, map[string]any) {
		t.Helper()
		// The publish (pkg/api/grpc PublishEvent without rawPayload).
		ce, err := rtpubsub.NewCloudEvent(&rtpubsub.CloudEvent{
			Source: "message", Topic: "room.events", Pubsub: "fanout",
			DataContentType: contentType, Data: payload, TraceID: tp,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := json.Marshal(ce)
		if err != nil {
			t.Fatal(err)
		}
		// The subscriber's sidecar (pkg/runtime/subscription) and its
		// streaming delivery (pkg/runtime/pubsub/streamer).
		var got map[string]any
		if err := json.Unmarshal(wire, &got); err != nil {
			t.Fatal(err)
		}
		env, span, err := rtpubsub.GRPCEnvelopeFromSubscriptionMessage(context.Background(), &rtpubsub.SubscribedMessage{
			CloudEvent: got, Data: wire, Topic: "room.events", PubSub: "fanout",
			Metadata: map[string]string{rtpubsub.MetadataKeyPubSub: "fanout"},
		}, logger.NewLogger("test"), &config.TracingSpec{})
		if err != nil {
			t.Fatal(err)
		}
		if span != nil {
			span.End()
		}
		if env.GetId() == "" {
			t.Errorf("%s: the delivery lost the event's id", contentType)
		}
		return env.GetData(), got
	}

	data, ce := deliver("application/octet-stream")
	if string(data) != string(payload) {
		t.Errorf("octet-stream: delivered %s, want the published bytes %s", data, payload)
	}
	if _, ok := ce[contribpubsub.DataBase64Field]; !ok {
		t.Errorf("octet-stream: the CloudEvent carries no data_base64: %v", ce)
	}
	if ce[contribpubsub.TraceParentField] != tp {
		t.Errorf("octet-stream: traceparent %v, want %s", ce[contribpubsub.TraceParentField], tp)
	}

	data, ce = deliver("application/json")
	if _, ok := ce[contribpubsub.DataField].(map[string]any); !ok {
		t.Errorf("json: the CloudEvent's data is %T, want the payload parsed into a map", ce[contribpubsub.DataField])
	}
	if string(data) == string(payload) {
		t.Errorf("json: delivered the published bytes unchanged; the sidecar no longer re-encodes JSON payloads, and the octet-stream publish may be moot")
	}
}

// roomEventBatch is a room.events payload as the message service
// publishes it at BenchmarkFanout's scenario A: n message events with
// the load client's 64-byte texts, each with its ack, and a traceparent.
func roomEventBatch(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"room_id":"","events":[`)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"room_id":"r_%024d","seq":%d,"type":"message","id":"e_%024d","sender_id":"u_%024d","client_id":"c-%d","text":"%d 1733550000000000000 %s","created_at":"%s"}`,
			i, 1000+i, i, i, i, i, strings.Repeat("x", 40), now)
	}
	b.WriteString(`],"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`)
	return []byte(b.String())
}

// cpuPerOp reports the process's CPU time (user and system, the GC's
// included) per iteration of f as cpu-µs/op: unlike ns/op it holds on a
// machine whose cores other work keeps busy.
func cpuPerOp(b *testing.B, f func()) {
	b.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	for range b.N {
		f()
	}
	b.ReportMetric(float64((cpu()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkEnvelope measures what daprd 1.14 (and the go-sdk's streaming
// receive) spend on one room.events batch of 10 events, by content type:
// publish is the publishing sidecar (the CloudEvent, its encoding, and
// JetStream's read of it for the message id); deliver is one subscribing
// sidecar (decoding the CloudEvent, the streaming envelope) plus the
// SDK's Receive, which parses a JSON payload it then hands over unused.
// Every batch is paid for once on publish and three times on delivery
// (two ws replicas and notification).
func BenchmarkEnvelope(b *testing.B) {
	payload := roomEventBatch(10)
	log := logger.NewLogger("bench")
	spec := &config.TracingSpec{}
	for _, ct := range []string{"application/json", "application/octet-stream"} {
		publish := func() []byte {
			ce, err := rtpubsub.NewCloudEvent(&rtpubsub.CloudEvent{
				Source: "message", Topic: "room.events", Pubsub: "fanout", DataContentType: ct, Data: payload,
				TraceID: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
			wire, err := json.Marshal(ce)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := contribpubsub.FromCloudEvent(wire, "", "", "", ""); err != nil {
				b.Fatal(err)
			}
			return wire
		}
		wire := publish()
		b.Run("publish/"+ct, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			cpuPerOp(b, func() { publish() })
		})
		b.Run("deliver/"+ct, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			cpuPerOp(b, func() {
				var ce map[string]any
				if err := json.Unmarshal(wire, &ce); err != nil {
					b.Fatal(err)
				}
				env, _, err := rtpubsub.GRPCEnvelopeFromSubscriptionMessage(context.Background(), &rtpubsub.SubscribedMessage{
					CloudEvent: ce, Data: wire, Topic: "room.events", PubSub: "fanout",
					Metadata: map[string]string{rtpubsub.MetadataKeyPubSub: "fanout"},
				}, log, spec)
				if err != nil {
					b.Fatal(err)
				}
				if env.GetDataContentType() == "application/json" { // go-sdk 1.11 Subscription.Receive
					var v any
					_ = json.Unmarshal(env.GetData(), &v)
				}
			})
		})
	}
	// rawPayload "true" (publish and subscription metadata): no envelope
	// on publish, but JetStream's publish still parses the payload for an
	// id (a JSON payload in full, then warns that it has none), and each
	// subscribing sidecar wraps the bytes in a CloudEvent of its own (new
	// id, no traceparent: no sidecar span) before delivering them.
	b.Run("publish/raw", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		cpuPerOp(b, func() { _, _ = contribpubsub.FromCloudEvent(payload, "", "", "", "") })
	})
	b.Run("deliver/raw", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		cpuPerOp(b, func() {
			ce := contribpubsub.FromRawPayload(payload, "room.events", "fanout")
			wire, err := json.Marshal(ce)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := rtpubsub.GRPCEnvelopeFromSubscriptionMessage(context.Background(), &rtpubsub.SubscribedMessage{
				CloudEvent: ce, Data: wire, Topic: "room.events", PubSub: "fanout",
				Metadata: map[string]string{rtpubsub.MetadataKeyPubSub: "fanout"},
			}, log, spec); err != nil {
				b.Fatal(err)
			}
		})
	})
}
