package hub

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/events"
)

// outgoing is one submission or signal waiting to be published.
type outgoing struct {
	sub  events.Submission
	sig  events.Signal
	from *conn
	span trace.Span // a send's, when tracing (tracing.go)
}

// batcher publishes queued items in batches: one goroutine takes whatever
// has queued up (up to max, optionally lingering window for more) and
// publishes it as one pub/sub message. At low load a batch is a single
// item and adds no delay; under load the batches grow while the previous
// publish is in flight, so the broker sees fewer, larger messages. It
// carries typing signals; submissions go through the submitter.
type batcher struct {
	in      chan outgoing
	max     int
	window  time.Duration
	publish func(ctx context.Context, items []outgoing) error
	quit    chan struct{}
	done    chan struct{}
}

func newBatcher(h *Hub, size, max int, window time.Duration, publish func(context.Context, []outgoing) error) *batcher {
	b := &batcher{
		in:      make(chan outgoing, size),
		max:     max,
		window:  window,
		publish: publish,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	h.workers.Add(1)
	go func() {
		defer h.workers.Done()
		b.run()
	}()
	return b
}

// add queues an item; false when the queue is full or stopped.
func (b *batcher) add(o outgoing) bool {
	select {
	case <-b.quit:
		return false
	default:
	}
	select {
	case b.in <- o:
		return true
	default:
		return false
	}
}

// stop publishes what is queued, then ends the batcher.
func (b *batcher) stop() {
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
	<-b.done
}

func (b *batcher) run() {
	defer close(b.done)
	for {
		var first outgoing
		select {
		case first = <-b.in:
		case <-b.quit:
			b.flush()
			return
		}
		batch := b.collect(first)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = b.publish(ctx, batch) // a failure was reported to the senders
		cancel()
	}
}

// collect gathers more items after first, without waiting unless a window
// is set.
func (b *batcher) collect(first outgoing) []outgoing {
	batch := []outgoing{first}
	var timeout <-chan time.Time
	if b.window > 0 {
		t := time.NewTimer(b.window)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < b.max {
		if timeout == nil {
			select {
			case o := <-b.in:
				batch = append(batch, o)
				continue
			default:
				return batch
			}
		}
		select {
		case o := <-b.in:
			batch = append(batch, o)
		case <-timeout:
			return batch
		}
	}
	return batch
}

// flush publishes whatever is still queued.
func (b *batcher) flush() {
	for {
		select {
		case o := <-b.in:
			batch := b.collect(o)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = b.publish(ctx, batch) // a failure was reported to the senders
			cancel()
		default:
			return
		}
	}
}

// publishSubmissions publishes the submissions to messages.submitted, one
// message per room with the room as its partition key, so that a room's
// submissions keep the order they were sent in on a broker that
// partitions the topic (Kafka). A room whose publish fails has its
// senders told; the other rooms' go on.
func (h *Hub) publishSubmissions(ctx context.Context, items []outgoing) error {
	var rooms []string
	byRoom := map[string][]outgoing{}
	for _, it := range items {
		if _, ok := byRoom[it.sub.RoomID]; !ok {
			rooms = append(rooms, it.sub.RoomID)
		}
		byRoom[it.sub.RoomID] = append(byRoom[it.sub.RoomID], it)
	}
	var errs []error
	for _, room := range rooms {
		its := byRoom[room]
		batch := events.SubmissionBatch{Submissions: make([]events.Submission, len(its))}
		for i, it := range its {
			batch.Submissions[i] = it.sub
		}
		if err := h.deps.Publisher.PublishJSON(ctx, events.PubSub, events.TopicSubmitted, room, encode(batch)); err != nil {
			h.log.Error("publish submissions", "room_id", room, "count", len(its), "err", err)
			for _, it := range its {
				if it.from.takePending(it.sub.RoomID, it.sub.ClientID) {
					it.from.sendError("unavailable", "the message could not be sent; retry with the same client_id", it.sub.ClientID)
				}
			}
			errs = append(errs, err)
			continue
		}
		h.stats.Published.Add(1)
	}
	return errors.Join(errs...)
}

func (h *Hub) publishSignals(ctx context.Context, items []outgoing) error {
	batch := events.SignalBatch{Signals: make([]events.Signal, len(items))}
	for i, it := range items {
		batch.Signals[i] = it.sig
	}
	// Signals are best effort: a lost typing notice is not worth a retry.
	if err := h.deps.Publisher.PublishJSON(ctx, events.Fanout, events.TopicSignals, "", encode(batch)); err != nil {
		h.log.Warn("publish signals", "count", len(items), "err", err)
		return err
	}
	return nil
}
