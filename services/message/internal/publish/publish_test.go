package publish

import (
	"context"
	"maps"
	"testing"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/events"
)

// recordingClient is the one call of dapr.Client the publisher makes,
// recording the request its options build.
type recordingClient struct {
	dapr.Client
	got *pb.PublishEventRequest
}

func (c *recordingClient) PublishEvent(_ context.Context, pubsub, topic string, data interface{}, opts ...dapr.PublishEventOption) error {
	c.got = &pb.PublishEventRequest{PubsubName: pubsub, Topic: topic}
	for _, o := range opts {
		o(c.got)
	}
	return nil
}

// TestDaprPublishesARoomsPayloadsWithItsPartitionKey: submissions and
// announcements of a room carry the room as partitionKey metadata, which
// keeps them in order on Kafka; other payloads carry none.
func TestDaprPublishesARoomsPayloadsWithItsPartitionKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		topic   string
		payload any
		want    map[string]string
	}{
		{"a REST send", events.TopicSubmitted, events.SubmissionBatch{Submissions: []events.Submission{{RoomID: "r_1"}}}, map[string]string{"partitionKey": "r_1"}},
		{"a room's announcement", events.TopicRoomEvents, events.RoomEventBatch{RoomID: "r_2"}, map[string]string{"partitionKey": "r_2"}},
		{"a dead letter", events.TopicDeadLetter, map[string]string{"room_id": "r_3"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recordingClient{}
			if err := NewDapr(c, events.PubSub).Publish(context.Background(), tc.topic, tc.payload); err != nil {
				t.Fatal(err)
			}
			if got := c.got.GetMetadata(); !maps.Equal(got, tc.want) {
				t.Fatalf("metadata %v, want %v", got, tc.want)
			}
			if got, want := c.got.GetDataContentType(), "application/json"; got != want {
				t.Fatalf("content type %q, want %q", got, want)
			}
		})
	}
}
