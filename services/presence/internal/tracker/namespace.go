package tracker

import (
	"context"
	"strings"

	"github.com/papochat/papo/platform/statestore"
)

// Namespace returns store with every key under prefix, so several papo
// stacks can share one state server (the end-to-end tests run stacks on
// the machine's one Redis side by side) without one stack's sweeper
// seeing another's replicas. An empty prefix returns store itself.
func Namespace(store statestore.Store, prefix string) statestore.Store {
	if prefix == "" {
		return store
	}
	return namespaced{store: store, prefix: prefix + "/"}
}

type namespaced struct {
	store  statestore.Store
	prefix string
}

func (n namespaced) strip(it statestore.Item) statestore.Item {
	it.Key = strings.TrimPrefix(it.Key, n.prefix)
	return it
}

func (n namespaced) Get(ctx context.Context, key string) (statestore.Item, error) {
	it, err := n.store.Get(ctx, n.prefix+key)
	return n.strip(it), err
}

func (n namespaced) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = n.prefix + k
	}
	items, err := n.store.BulkGet(ctx, full)
	for i := range items {
		items[i] = n.strip(items[i])
	}
	return items, err
}

func (n namespaced) Write(ctx context.Context, op statestore.Op) error {
	op.Key = n.prefix + op.Key
	return n.store.Write(ctx, op)
}

func (n namespaced) Transact(ctx context.Context, ops []statestore.Op) error {
	full := make([]statestore.Op, len(ops))
	for i, op := range ops {
		op.Key = n.prefix + op.Key
		full[i] = op
	}
	return n.store.Transact(ctx, full)
}

func (n namespaced) Ping(ctx context.Context) error { return n.store.Ping(ctx) }
