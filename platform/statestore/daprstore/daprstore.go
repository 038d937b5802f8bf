// Package daprstore is the statestore.Store that talks to a Dapr state
// store component through the sidecar. It uses only operations every state
// store supports (no Query API).
package daprstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	dapr "github.com/dapr/go-sdk/client"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/papochat/papo/platform/statestore"
)

// Store is a statestore.Store backed by the Dapr state component Name.
type Store struct {
	client dapr.Client
	name   string
	// parallelism bounds the sidecar's concurrent reads in a BulkGet.
	parallelism int32

	metrics *Metrics
	obs     *observers // metrics' histograms for this store
	tracer  trace.Tracer
}

// New returns a Store for the state component named name.
func New(client dapr.Client, name string, opts ...Option) *Store {
	s := &Store{client: client, name: name, parallelism: 16}
	for _, o := range opts {
		o(s)
	}
	if s.metrics != nil {
		s.obs = s.metrics.resolve(name)
	}
	return s
}

// Get implements statestore.Store.
func (s *Store) Get(ctx context.Context, key string) (_ statestore.Item, err error) {
	ctx, c := s.begin(ctx, opGet, 1)
	defer func() { c.end(err) }()
	it, err := s.client.GetStateWithConsistency(ctx, s.name, key, nil, dapr.StateConsistencyStrong)
	if err != nil {
		return statestore.Item{}, fmt.Errorf("get %q from %s: %w", key, s.name, err)
	}
	if it == nil || it.Value == nil {
		return statestore.Item{}, statestore.ErrNotFound
	}
	return statestore.Item{Key: key, Value: it.Value, ETag: it.Etag}, nil
}

// BulkGet implements statestore.Store.
func (s *Store) BulkGet(ctx context.Context, keys []string) (_ []statestore.Item, err error) {
	out := make([]statestore.Item, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ctx, c := s.begin(ctx, opBulkGet, len(keys))
	defer func() { c.end(err) }()
	items, err := s.client.GetBulkState(ctx, s.name, keys, nil, s.parallelism)
	if err != nil {
		return nil, fmt.Errorf("bulk get %d keys from %s: %w", len(keys), s.name, err)
	}
	byKey := make(map[string]*dapr.BulkStateItem, len(items))
	for _, it := range items {
		if it.Error != "" {
			return nil, fmt.Errorf("bulk get %q from %s: %s", it.Key, s.name, it.Error)
		}
		byKey[it.Key] = it
	}
	for i, k := range keys {
		out[i].Key = k
		// Stores disagree on how they answer a missing key in a bulk get
		// (no item, or an item with an empty value); both mean "absent".
		if it := byKey[k]; it != nil && len(it.Value) > 0 {
			out[i].Value, out[i].ETag = it.Value, it.Etag
		}
	}
	return out, nil
}

// Write implements statestore.Store.
func (s *Store) Write(ctx context.Context, op statestore.Op) (err error) {
	kind := opSave
	if op.Delete {
		kind = opDelete
	}
	ctx, c := s.begin(ctx, kind, 1)
	defer func() { c.end(err) }()
	if op.Delete {
		var etag *dapr.ETag
		opts := &dapr.StateOptions{Consistency: dapr.StateConsistencyStrong, Concurrency: dapr.StateConcurrencyLastWrite}
		if op.ETag != "" {
			etag = &dapr.ETag{Value: op.ETag}
			opts.Concurrency = dapr.StateConcurrencyFirstWrite
		}
		err := s.client.DeleteStateWithETag(ctx, s.name, op.Key, etag, nil, opts)
		return s.wrap(err, "delete %q", op.Key)
	}
	err = s.client.SaveBulkState(ctx, s.name, setItem(op))
	return s.wrap(err, "save %q", op.Key)
}

// Transact implements statestore.Store.
func (s *Store) Transact(ctx context.Context, ops []statestore.Op) (err error) {
	if len(ops) == 0 {
		return nil
	}
	ctx, c := s.begin(ctx, opTransact, len(ops))
	defer func() { c.end(err) }()
	tx := make([]*dapr.StateOperation, len(ops))
	for i, op := range ops {
		typ := dapr.StateOperationTypeUpsert
		if op.Delete {
			typ = dapr.StateOperationTypeDelete
		}
		tx[i] = &dapr.StateOperation{Type: typ, Item: setItem(op)}
	}
	err = s.client.ExecuteStateTransaction(ctx, s.name, nil, tx)
	return s.wrap(err, "transaction of %d operations", len(ops))
}

// Ping implements statestore.Store: a read of a key nobody writes.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.client.GetState(ctx, s.name, "papo.ping", nil)
	return s.wrap(err, "ping")
}

func setItem(op statestore.Op) *dapr.SetStateItem {
	it := &dapr.SetStateItem{
		Key:     op.Key,
		Value:   op.Value,
		Options: &dapr.StateOptions{Consistency: dapr.StateConsistencyStrong, Concurrency: dapr.StateConcurrencyLastWrite},
	}
	switch {
	case op.ETag != "":
		it.Etag = &dapr.ETag{Value: op.ETag}
		it.Options.Concurrency = dapr.StateConcurrencyFirstWrite
	case op.IfAbsent:
		// First-write with no ETag is Dapr's insert-if-absent; the
		// contract suite proves each store honours it.
		it.Options.Concurrency = dapr.StateConcurrencyFirstWrite
	}
	if op.TTL > 0 {
		secs := int64(op.TTL.Seconds())
		it.Metadata = map[string]string{"ttlInSeconds": strconv.FormatInt(max(secs, 1), 10)}
	}
	return it
}

// wrap turns the sidecar's concurrency failures into statestore.ErrConflict.
// Dapr reports a stale ETag on a single save as codes.Aborted (HTTP 409),
// but a failed transaction only as an error whose text says "etag
// mismatch", so both are checked.
func (s *Store) wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if isConflict(err) {
		return fmt.Errorf("%s in %s: %w", fmt.Sprintf(format, args...), s.name, statestore.ErrConflict)
	}
	return fmt.Errorf("%s in %s: %w", fmt.Sprintf(format, args...), s.name, err)
}

// Stores word a failed condition differently, and only some map it to an
// ETag error; the texts below are the ones the store contract suite met on
// each store (daprd 1.14): PostgreSQL answers an insert-if-absent on an
// existing key with "no item was updated", Redis with its Lua script's
// "failed to set key" error.
func isConflict(err error) bool {
	if st, ok := status.FromError(err); ok && st.Code() == codes.Aborted {
		return true
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "etag mismatch"), strings.Contains(msg, "etag_mismatch"), strings.Contains(msg, "possible etag"):
		return true
	case strings.Contains(msg, "no item was updated"):
		return true
	case strings.Contains(msg, "user_script") && strings.Contains(msg, "failed to set key"):
		return true
	case strings.Contains(msg, "error 1213") && strings.Contains(msg, "deadlock"):
		// MySQL/MariaDB (InnoDB) settles concurrent inserts of one new key
		// by rolling back all but one as a deadlock: the loser wrote
		// nothing, so it lost a race like any other and re-reads.
		return true
	}
	return false
}
