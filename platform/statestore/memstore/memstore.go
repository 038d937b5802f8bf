// Package memstore is an in-process statestore.Store for unit tests. It
// passes the same contract suite (statestore/storetest) as the Dapr-backed
// store.
package memstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

type entry struct {
	value   []byte
	etag    string
	expires time.Time
}

// Store is a statestore.Store held in memory.
type Store struct {
	mu      sync.Mutex
	data    map[string]entry
	version uint64
	now     func() time.Time
}

// New returns an empty store.
func New() *Store {
	return NewWithClock(time.Now)
}

// NewWithClock returns an empty store whose TTLs are measured on now, so a
// test can move time forward instead of sleeping.
func NewWithClock(now func() time.Time) *Store {
	return &Store{data: map[string]entry{}, now: now}
}

// get returns the live entry at key; the caller holds mu.
func (s *Store) get(key string) (entry, bool) {
	e, ok := s.data[key]
	if ok && !e.expires.IsZero() && !s.now().Before(e.expires) {
		delete(s.data, key)
		return entry{}, false
	}
	return e, ok
}

// Get implements statestore.Store.
func (s *Store) Get(_ context.Context, key string) (statestore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get(key)
	if !ok {
		return statestore.Item{}, statestore.ErrNotFound
	}
	return statestore.Item{Key: key, Value: clone(e.value), ETag: e.etag}, nil
}

// BulkGet implements statestore.Store.
func (s *Store) BulkGet(_ context.Context, keys []string) ([]statestore.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]statestore.Item, len(keys))
	for i, k := range keys {
		out[i].Key = k
		if e, ok := s.get(k); ok {
			out[i].Value, out[i].ETag = clone(e.value), e.etag
		}
	}
	return out, nil
}

// Write implements statestore.Store.
func (s *Store) Write(ctx context.Context, op statestore.Op) error {
	return s.Transact(ctx, []statestore.Op{op})
}

// Transact implements statestore.Store.
func (s *Store) Transact(_ context.Context, ops []statestore.Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		e, ok := s.get(op.Key)
		if op.ETag != "" && (!ok || e.etag != op.ETag) {
			return statestore.ErrConflict
		}
		if op.IfAbsent && !op.Delete && ok {
			return statestore.ErrConflict
		}
	}
	for _, op := range ops {
		if op.Delete {
			delete(s.data, op.Key)
			continue
		}
		s.version++
		e := entry{value: clone(op.Value), etag: strconv.FormatUint(s.version, 10)}
		if op.TTL > 0 {
			e.expires = s.now().Add(op.TTL)
		}
		s.data[op.Key] = e
	}
	return nil
}

// Ping implements statestore.Store.
func (s *Store) Ping(context.Context) error { return nil }

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
