package bus

import (
	"context"
	"maps"
	"testing"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
)

// recordingClient is the one call of dapr.Client the publisher makes,
// recording the request its options build.
type recordingClient struct {
	dapr.Client
	got *pb.PublishEventRequest
}

func (c *recordingClient) PublishEvent(_ context.Context, pubsub, topic string, _ interface{}, opts ...dapr.PublishEventOption) error {
	c.got = &pb.PublishEventRequest{PubsubName: pubsub, Topic: topic}
	for _, o := range opts {
		o(c.got)
	}
	return nil
}

// TestPublisherSendsTheKeyAsPartitionKey: a keyed publish carries the key
// as partitionKey metadata (Kafka's record key); an unkeyed one none.
func TestPublisherSendsTheKeyAsPartitionKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		want      map[string]string
	}{
		{"keyed by a room", "r_1", map[string]string{"partitionKey": "r_1"}},
		{"not keyed", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recordingClient{}
			if err := (Publisher{Client: c}).Publish(context.Background(), "pubsub", "messages.submitted", tc.key, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if got := c.got.GetMetadata(); !maps.Equal(got, tc.want) {
				t.Fatalf("metadata %v, want %v", got, tc.want)
			}
		})
	}
}
