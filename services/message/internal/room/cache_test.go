package room_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// readCounter counts the keys with a prefix read through Get and BulkGet.
type readCounter struct {
	statestore.Store
	prefix string
	n      atomic.Int64
}

func (c *readCounter) count(keys ...string) {
	for _, k := range keys {
		if strings.HasPrefix(k, c.prefix) {
			c.n.Add(1)
		}
	}
}

func (c *readCounter) Get(ctx context.Context, key string) (statestore.Item, error) {
	c.count(key)
	return c.Store.Get(ctx, key)
}

func (c *readCounter) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	c.count(keys...)
	return c.Store.BulkGet(ctx, keys)
}

// TestHistoryReadsAnEventKeyOnce: a page read twice reads its event keys
// from the store once; the second read is served from the cache, and a
// message deleted after it was cached is still served without its text.
func TestHistoryReadsAnEventKeyOnce(t *testing.T) {
	store := &readCounter{Store: memstore.New(), prefix: "ev|"}
	svc := room.New(store, &publish.Memory{}, quiet())
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	var subs []events.Submission
	for i := range 120 {
		subs = append(subs, msg(r.ID, "alice", fmt.Sprint(i), fmt.Sprint("secret ", i)))
	}
	consume(t, svc, subs...)
	consume(t, svc, msg(r.ID, "alice", "last", "pushes the messages out of the head's tail"))

	page := room.Page{HasAfter: true, After: 0, Limit: 50}
	first := history(t, svc, "alice", r.ID, page)
	reads := store.n.Load()
	if reads == 0 {
		t.Fatal("the first read took no event key from the store; the test does not exercise the cache")
	}
	second := history(t, svc, "alice", r.ID, page)
	if got := store.n.Load(); got != reads {
		t.Fatalf("the second read of the page read %d event keys again", got-reads)
	}
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Fatalf("cached page differs:\n%v\n%v", first, second)
	}

	// Delete seq 2 ("secret 0"), cached above: history hides its text.
	consume(t, svc, events.Submission{Type: api.EventDelete, RoomID: r.ID, SenderID: "alice", ClientID: "d", TargetSeq: 2})
	for _, e := range history(t, svc, "alice", r.ID, page).Events {
		if e.Seq == 2 && e.Text != "" {
			t.Fatalf("a deleted message served from the cache keeps its text: %+v", e)
		}
	}
}
