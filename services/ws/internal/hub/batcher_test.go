package hub

import (
	"context"
	"fmt"
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

// TestBatcherKeepsOneBatchInFlight: after a publish the next batch waits
// until every submission of the first is settled; what queued meanwhile
// goes out together, in order; a batch nobody settles is released after
// settleWait.
func TestBatcherKeepsOneBatchInFlight(t *testing.T) {
	h := &Hub{}
	rec := &recordedPublishes{calls: make(chan int, 16)}
	b := newBatcher(h, 64, 100, 0, 300*time.Millisecond, rec.publish)
	defer b.stop()

	b.add(sub("r", "1"))
	if n := <-rec.calls; n != 1 {
		t.Fatalf("first batch has %d items, want 1", n)
	}
	for i := 2; i <= 5; i++ {
		b.add(sub("r", fmt.Sprint(i)))
	}
	select {
	case n := <-rec.calls:
		t.Fatalf("published a batch of %d while the first was in flight", n)
	case <-time.After(100 * time.Millisecond):
	}
	b.settle("r", "alice", "1")
	select {
	case n := <-rec.calls:
		if n != 4 {
			t.Fatalf("second batch has %d items, want the 4 queued meanwhile", n)
		}
	case <-time.After(time.Second):
		t.Fatal("settling the first batch did not release the second")
	}
	rec.mu.Lock()
	for i, o := range rec.batches[1] {
		if o.sub.ClientID != fmt.Sprint(i+2) {
			t.Fatalf("second batch out of order: %+v", rec.batches[1])
		}
	}
	rec.mu.Unlock()

	// Nobody settles the second batch: the third goes out after settleWait.
	start := time.Now()
	b.add(sub("r", "6"))
	select {
	case <-rec.calls:
		if waited := time.Since(start); waited < 150*time.Millisecond {
			t.Fatalf("third batch after %v, before the settle wait ran out", waited)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("an unsettled batch held the next one for good")
	}
}

// TestBatcherWithoutSettleWaitPublishesAtOnce: the signals batcher (and a
// zero settle wait) never waits for settlement.
func TestBatcherWithoutSettleWaitPublishesAtOnce(t *testing.T) {
	h := &Hub{}
	rec := &recordedPublishes{calls: make(chan int, 16)}
	b := newBatcher(h, 64, 100, 0, 0, rec.publish)
	defer b.stop()
	b.add(sub("r", "1"))
	<-rec.calls
	b.add(sub("r", "2"))
	select {
	case <-rec.calls:
	case <-time.After(time.Second):
		t.Fatal("the second item waited for a settlement")
	}
}
