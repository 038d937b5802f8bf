package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/events"
)

type recordedPublishes struct {
	mu      sync.Mutex
	batches [][]outgoing
	calls   chan int // the size of each publish, as it happens
}

func (r *recordedPublishes) publish(_ context.Context, items []outgoing) error {
	r.mu.Lock()
	r.batches = append(r.batches, items)
	r.mu.Unlock()
	r.calls <- len(items)
	return nil
}

func sub(room, client string) outgoing {
	return outgoing{sub: events.Submission{RoomID: room, SenderID: "alice", ClientID: client}}
}

// TestBatcherPublishesAtOnce: the signals batcher never waits for more.
func TestBatcherPublishesAtOnce(t *testing.T) {
	h := &Hub{}
	rec := &recordedPublishes{calls: make(chan int, 16)}
	b := newBatcher(h, 64, 100, 0, rec.publish)
	defer b.stop()
	b.add(sub("r", "1"))
	<-rec.calls
	b.add(sub("r", "2"))
	select {
	case <-rec.calls:
	case <-time.After(time.Second):
		t.Fatal("the second item waited")
	}
}

// keyedPublisher records what each publish carried.
type keyedPublisher struct {
	mu  sync.Mutex
	got []keyedPublish
}

type keyedPublish struct {
	topic, key string
	clients    []string
}

func (p *keyedPublisher) PublishJSON(_ context.Context, _, topic, key string, data []byte) error {
	var b events.SubmissionBatch
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	kp := keyedPublish{topic: topic, key: key}
	for _, s := range b.Submissions {
		if s.RoomID != key {
			return fmt.Errorf("submission of %s published under key %q", s.RoomID, key)
		}
		kp.clients = append(kp.clients, s.ClientID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, kp)
	return nil
}

// TestPublishedSubmissionsAreKeyedByTheirRoom: a batch that falls back to
// messages.submitted goes as one message per room, keyed by the room and
// in the order sent, so a broker that partitions the topic (Kafka) keeps
// each room's order.
func TestPublishedSubmissionsAreKeyedByTheirRoom(t *testing.T) {
	pub := &keyedPublisher{}
	h := New(Config{}, Deps{Publisher: pub})
	items := []outgoing{sub("r1", "a"), sub("r2", "b"), sub("r1", "c"), sub("r3", "d"), sub("r2", "e")}
	if err := h.publishSubmissions(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	want := []keyedPublish{
		{events.TopicSubmitted, "r1", []string{"a", "c"}},
		{events.TopicSubmitted, "r2", []string{"b", "e"}},
		{events.TopicSubmitted, "r3", []string{"d"}},
	}
	if !reflect.DeepEqual(pub.got, want) {
		t.Fatalf("published %+v, want %+v", pub.got, want)
	}
	if got := h.stats.Published.Load(); got != 3 {
		t.Fatalf("counted %d publishes, want 3", got)
	}
}
