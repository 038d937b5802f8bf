package hub

import (
	"context"
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
