package pubsub_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/pubsub"
)

// recordingClient records the request a publish's options build.
type recordingClient struct {
	got  *pb.PublishEventRequest
	data any
}

func (c *recordingClient) PublishEvent(_ context.Context, component, topic string, data any, opts ...dapr.PublishEventOption) error {
	c.got = &pb.PublishEventRequest{PubsubName: component, Topic: topic}
	c.data = data
	for _, o := range opts {
		o(c.got)
	}
	return nil
}

// TestPublishSendsThePartitionKey: a keyed publish carries the key as
// partitionKey metadata (Kafka's record key); an unkeyed one none. A
// payload that is events.Keyed (a room's submissions and announcements)
// carries its room, which keeps them in order on Kafka.
func TestPublishSendsThePartitionKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		publish func(*pubsub.Publisher) error
		want    map[string]string
	}{
		{"keyed by a room", func(p *pubsub.Publisher) error {
			return p.PublishJSON(context.Background(), "pubsub", "messages.submitted", "r_1", []byte(`{}`))
		}, map[string]string{"partitionKey": "r_1"}},
		{"not keyed", func(p *pubsub.Publisher) error {
			return p.PublishJSON(context.Background(), "pubsub", "messages.submitted", "", []byte(`{}`))
		}, nil},
		{"a room's announcement", func(p *pubsub.Publisher) error {
			return pubsub.NewTopic[events.RoomEventBatch](p, events.PubSub, events.TopicRoomEvents).Publish(context.Background(), events.RoomEventBatch{RoomID: "r_2"})
		}, map[string]string{"partitionKey": "r_2"}},
		{"a REST send", func(p *pubsub.Publisher) error {
			return p.On(events.PubSub).Publish(context.Background(), events.TopicSubmitted, events.SubmissionBatch{Submissions: []events.Submission{{RoomID: "r_1"}}})
		}, map[string]string{"partitionKey": "r_1"}},
		{"a dead letter", func(p *pubsub.Publisher) error {
			return p.On(events.PubSub).Publish(context.Background(), events.TopicDeadLetter, map[string]string{"room_id": "r_3"})
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recordingClient{}
			if err := tc.publish(pubsub.NewPublisher(c, nil)); err != nil {
				t.Fatal(err)
			}
			if got := c.got.GetMetadata(); !maps.Equal(got, tc.want) {
				t.Fatalf("metadata %v, want %v", got, tc.want)
			}
			// Opaque bytes: daprd 1.14 parses and re-encodes a JSON
			// payload at every hop (publish, JetStream, each subscriber).
			if ct := c.got.GetDataContentType(); ct != "application/octet-stream" {
				t.Fatalf("content type %q, want application/octet-stream", ct)
			}
			if b, ok := c.data.([]byte); !ok || !json.Valid(b) {
				t.Fatalf("data %T %q, want the payload's JSON bytes", c.data, c.data)
			}
		})
	}
}

// TestOutcome: the one rule — nil acks, a malformed payload drops, any
// other error retries.
func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want pubsub.Status
	}{
		{nil, pubsub.Ack},
		{pubsub.Malformed(errors.New("no id")), pubsub.Drop},
		{errors.New("store down"), pubsub.Retry},
		{context.DeadlineExceeded, pubsub.Retry},
	} {
		if got := pubsub.Outcome(tc.err); got != tc.want {
			t.Errorf("Outcome(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	if _, err := pubsub.Decode[events.SessionRevoked]([]byte(`{"session_id":`)); pubsub.Outcome(err) != pubsub.Drop {
		t.Errorf("a payload that does not decode: %v, want a drop", err)
	}
	ev, err := pubsub.Decode[events.SessionRevoked]([]byte(`"{\"session_id\":\"s1\"}"`))
	if err != nil || ev.SessionID != "s1" {
		t.Errorf("JSON sent as text: %+v, %v", ev, err)
	}
}

// TestDeliveredSubscriptions: Mount lists the subscriptions for the
// sidecar and answers each delivery by Outcome; a malformed payload goes
// to the WithMalformed hook: acknowledged once kept, retried when keeping
// it fails.
func TestDeliveredSubscriptions(t *testing.T) {
	var got []string
	hookFails := false
	r := muxRouter{http.NewServeMux()}
	pubsub.Mount(r, slog.New(slog.NewTextHandler(io.Discard, nil)),
		pubsub.Subscribe(events.PubSub, events.TopicRoomEvents, "/events/room", func(_ context.Context, b events.RoomEventBatch) error {
			if b.RoomID == "fail" {
				return errors.New("store down")
			}
			if b.RoomID == "" {
				return pubsub.Malformed(errors.New("no room"))
			}
			got = append(got, b.RoomID)
			return nil
		}, pubsub.WithDeadLetter("dead"), pubsub.WithMalformed(func(_ context.Context, data []byte, _ error) error {
			got = append(got, "kept "+string(data))
			if hookFails {
				return errors.New("dead-letter store down")
			}
			return nil
		})))
	srv := httptest.NewServer(r.ServeMux)
	defer srv.Close()

	res, err := http.Get(srv.URL + pubsub.SubscribePath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := `[{"pubsubname":"pubsub","topic":"room.events","route":"/events/room","deadLetterTopic":"dead"}]`; strings.TrimSpace(string(b)) != want {
		t.Fatalf("subscriptions %s, want %s", b, want)
	}
	deliver := func(body string) string {
		t.Helper()
		res, err := http.Post(srv.URL+"/events/room", "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.TrimSpace(string(b))
	}
	for _, tc := range []struct{ name, body, want string }{
		{"a batch", `{"id":"1","data":{"room_id":"r1"}}`, `{"status":"SUCCESS"}`},
		{"a batch in base64", `{"id":"2","data_base64":"eyJyb29tX2lkIjoicjIifQ=="}`, `{"status":"SUCCESS"}`},
		{"a transient failure", `{"id":"3","data":{"room_id":"fail"}}`, `{"status":"RETRY"}`},
		{"a payload the handler refuses, kept", `{"id":"4","data":{}}`, `{"status":"SUCCESS"}`},
		{"a payload that does not decode, kept", `{"id":"5","data":[1]}`, `{"status":"SUCCESS"}`},
		{"not a CloudEvent", `{`, `{"status":"DROP"}`},
	} {
		if ans := deliver(tc.body); ans != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, ans, tc.want)
		}
	}
	hookFails = true
	if ans := deliver(`{"id":"6","data":[2]}`); ans != `{"status":"RETRY"}` {
		t.Errorf("malformed payload not kept: %s, want a retry", ans)
	}
	want := []string{"r1", "r2", "kept {}", "kept [1]", "kept [2]"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("handled %q, want %q", got, want)
	}
}

// muxRouter is a pubsub.Router over the standard library's mux.
type muxRouter struct{ *http.ServeMux }

func (m muxRouter) Method(method, pattern string, h http.Handler) { m.Handle(method+" "+pattern, h) }
