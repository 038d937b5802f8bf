package tracker_test

import (
	"context"
	"testing"

	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/platform/statestore/storetest"

	"github.com/papochat/papo/services/presence/internal/tracker"
)

func TestNamespacedStorePassesTheContract(t *testing.T) {
	storetest.Run(t, tracker.Namespace(memstore.New(), "stack-a"), storetest.Options{})
}

func TestNamespacesDoNotSeeEachOther(t *testing.T) {
	ctx := context.Background()
	shared := memstore.New()
	a, b := tracker.Namespace(shared, "a"), tracker.Namespace(shared, "b")
	f := newFixture(t)
	f.store = a
	f.restart()
	f.connect("ws-1", "alice")
	items, err := b.BulkGet(ctx, []string{"replicas", "u|alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Found() {
			t.Fatalf("namespace b sees %s of namespace a", it.Key)
		}
	}
	if it, err := a.Get(ctx, "u|alice"); err != nil || it.Key != "u|alice" {
		t.Fatalf("namespace a: %+v %v", it, err)
	}
}
