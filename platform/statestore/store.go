// Package statestore is the portable key-value contract papo's services
// keep their data behind: Get, BulkGet, single writes, deletes and
// transactions, with ETags for optimistic concurrency and TTLs. It is the
// subset every Dapr state store supports, so a profile can swap SQLite for
// Redis, PostgreSQL or MySQL without a code change (no Query API).
//
// Implementations: daprstore (through the Dapr sidecar) and memstore (in
// process, for unit tests). storetest is the one contract suite both pass.
package statestore

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get for a key that does not exist.
var ErrNotFound = errors.New("statestore: key not found")

// ErrConflict is returned when a write's concurrency condition fails: the
// ETag is stale, or an IfAbsent key already exists. A transaction that
// fails with ErrConflict wrote nothing. Callers re-read and retry.
var ErrConflict = errors.New("statestore: etag mismatch")

// Item is one key's value and version. A missing key in a BulkGet result
// has a nil Value and an empty ETag.
type Item struct {
	Key   string
	Value []byte
	ETag  string
}

// Found reports whether the item exists.
func (i Item) Found() bool { return i.Value != nil }

// Op is one write: an upsert of Value, or a delete when Delete is set.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
	// ETag, when set, makes the write succeed only if the key's current
	// ETag is this one.
	ETag string
	// IfAbsent makes an upsert succeed only if the key does not exist
	// (first-write concurrency with no ETag).
	IfAbsent bool
	// TTL, when positive, expires the key after that long.
	TTL time.Duration
}

// Store is a key-value store with optimistic concurrency.
type Store interface {
	// Get returns the item at key, or ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// BulkGet returns one item per key, in the order of keys.
	BulkGet(ctx context.Context, keys []string) ([]Item, error)
	// Write applies one operation; ErrConflict when its condition fails.
	Write(ctx context.Context, op Op) error
	// Transact applies all operations or none; ErrConflict when a
	// condition fails.
	Transact(ctx context.Context, ops []Op) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}
