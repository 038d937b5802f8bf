// Package storetest is the contract suite every statestore.Store must
// pass: the in-memory store and each real Dapr state store (SQLite, Redis,
// PostgreSQL, MySQL) run the same tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

// Options describe what a store guarantees beyond the common contract.
type Options struct {
	// NonAtomicConflicts marks a store whose transactions detect a stale
	// ETag but still apply the transaction's other operations (Redis: MULTI
	// has no rollback). Code that must be correct on every store commits
	// with a single conditional write and never relies on a transaction
	// being undone (see docs/message.md).
	NonAtomicConflicts bool
}

// Run runs the contract suite against s. Every test uses keys under a
// fresh prefix, so one store may serve them all.
//
// Insert-if-absent (Op.IfAbsent) is part of the contract for single writes
// only: inside a transaction some stores ignore it (Redis), so the suite
// does not promise it there.
func Run(t *testing.T, s statestore.Store, opts Options) {
	t.Helper()
	prefix := fmt.Sprintf("storetest.%d.", time.Now().UnixNano())
	key := func(t *testing.T, name string) string { return prefix + t.Name() + "." + name }
	ctx := context.Background()

	t.Run("get of a missing key is ErrNotFound", func(t *testing.T) {
		_, err := s.Get(ctx, key(t, "missing"))
		if !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})

	t.Run("write then get returns the value and an etag", func(t *testing.T) {
		k := key(t, "a")
		if err := s.Write(ctx, statestore.Op{Key: k, Value: []byte(`{"v":1}`)}); err != nil {
			t.Fatal(err)
		}
		it, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if string(it.Value) != `{"v":1}` || it.ETag == "" {
			t.Fatalf("got value %q etag %q", it.Value, it.ETag)
		}
	})

	t.Run("write with the current etag succeeds and a stale one conflicts", func(t *testing.T) {
		k := key(t, "b")
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`1`)})
		first := mustGet(t, s, k)
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`2`), ETag: first.ETag})
		err := s.Write(ctx, statestore.Op{Key: k, Value: []byte(`3`), ETag: first.ETag})
		if !errors.Is(err, statestore.ErrConflict) {
			t.Fatalf("stale etag: got %v, want ErrConflict", err)
		}
		if got := mustGet(t, s, k); string(got.Value) != `2` {
			t.Fatalf("after stale write value is %q, want 2", got.Value)
		}
	})

	t.Run("if-absent inserts once and refuses an existing key", func(t *testing.T) {
		k := key(t, "c")
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`"first"`), IfAbsent: true})
		err := s.Write(ctx, statestore.Op{Key: k, Value: []byte(`"second"`), IfAbsent: true})
		if !errors.Is(err, statestore.ErrConflict) {
			t.Fatalf("second insert: got %v, want ErrConflict", err)
		}
		if got := mustGet(t, s, k); string(got.Value) != `"first"` {
			t.Fatalf("value is %q, want \"first\"", got.Value)
		}
	})

	t.Run("concurrent if-absent inserts: exactly one wins", func(t *testing.T) {
		k := key(t, "race")
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Write(ctx, statestore.Op{Key: k, Value: []byte(fmt.Sprint(i)), IfAbsent: true})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, statestore.ErrConflict):
					conflicts.Add(1)
				default:
					t.Errorf("insert %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 7 {
			t.Fatalf("got %d wins and %d conflicts, want 1 and 7", wins.Load(), conflicts.Load())
		}
	})

	t.Run("bulk get keeps order and marks missing keys", func(t *testing.T) {
		a, b, missing := key(t, "a"), key(t, "b"), key(t, "missing")
		mustWrite(t, s, statestore.Op{Key: a, Value: []byte(`"A"`)})
		mustWrite(t, s, statestore.Op{Key: b, Value: []byte(`"B"`)})
		items, err := s.BulkGet(ctx, []string{b, missing, a})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 3 {
			t.Fatalf("got %d items, want 3", len(items))
		}
		if items[0].Key != b || string(items[0].Value) != `"B"` || items[0].ETag == "" {
			t.Errorf("item 0 = %+v", items[0])
		}
		if items[1].Key != missing || items[1].Found() {
			t.Errorf("item 1 = %+v, want missing", items[1])
		}
		if items[2].Key != a || string(items[2].Value) != `"A"` {
			t.Errorf("item 2 = %+v", items[2])
		}
	})

	t.Run("delete removes a key; delete with a stale etag conflicts", func(t *testing.T) {
		k := key(t, "d")
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`1`)})
		old := mustGet(t, s, k)
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`2`)})
		if err := s.Write(ctx, statestore.Op{Key: k, Delete: true, ETag: old.ETag}); !errors.Is(err, statestore.ErrConflict) {
			t.Fatalf("stale delete: got %v, want ErrConflict", err)
		}
		mustWrite(t, s, statestore.Op{Key: k, Delete: true})
		if _, err := s.Get(ctx, k); !errors.Is(err, statestore.ErrNotFound) {
			t.Fatalf("after delete: got %v, want ErrNotFound", err)
		}
	})

	t.Run("transaction applies all operations", func(t *testing.T) {
		a, b, c := key(t, "a"), key(t, "b"), key(t, "c")
		mustWrite(t, s, statestore.Op{Key: c, Value: []byte(`"gone"`)})
		err := s.Transact(ctx, []statestore.Op{
			{Key: a, Value: []byte(`"A"`)},
			{Key: b, Value: []byte(`"B"`), IfAbsent: true},
			{Key: c, Delete: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		items, err := s.BulkGet(ctx, []string{a, b, c})
		if err != nil {
			t.Fatal(err)
		}
		if string(items[0].Value) != `"A"` || string(items[1].Value) != `"B"` || items[2].Found() {
			t.Fatalf("got %+v", items)
		}
	})

	t.Run("transaction with a stale etag conflicts and, on atomic stores, writes nothing", func(t *testing.T) {
		head, other := key(t, "head"), key(t, "other")
		mustWrite(t, s, statestore.Op{Key: head, Value: []byte(`1`)})
		stale := mustGet(t, s, head)
		mustWrite(t, s, statestore.Op{Key: head, Value: []byte(`2`)})
		err := s.Transact(ctx, []statestore.Op{
			{Key: other, Value: []byte(`"x"`)},
			{Key: head, Value: []byte(`3`), ETag: stale.ETag},
		})
		if !errors.Is(err, statestore.ErrConflict) {
			t.Fatalf("got %v, want ErrConflict", err)
		}
		_, err = s.Get(ctx, other)
		switch {
		case opts.NonAtomicConflicts && err != nil:
			t.Fatalf("store marked non-atomic, but the failed transaction's other write is absent (%v): "+
				"update its Options", err)
		case !opts.NonAtomicConflicts && !errors.Is(err, statestore.ErrNotFound):
			t.Fatalf("other key written by a failed transaction: %v", err)
		}
		if got := mustGet(t, s, head); string(got.Value) != `2` {
			t.Fatalf("head = %q, want 2", got.Value)
		}
	})

	t.Run("concurrent etag-guarded increments lose no update", func(t *testing.T) {
		k := key(t, "counter")
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`0`)})
		const workers, each = 4, 10
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					for {
						it, err := s.Get(ctx, k)
						if err != nil {
							t.Error(err)
							return
						}
						var n int
						fmt.Sscan(string(it.Value), &n)
						err = s.Transact(ctx, []statestore.Op{{Key: k, Value: []byte(fmt.Sprint(n + 1)), ETag: it.ETag}})
						if err == nil {
							break
						}
						if !errors.Is(err, statestore.ErrConflict) {
							t.Error(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if got := mustGet(t, s, k); string(got.Value) != fmt.Sprint(workers*each) {
			t.Fatalf("counter = %s, want %d", got.Value, workers*each)
		}
	})

	t.Run("ttl expires a key", func(t *testing.T) {
		k := key(t, "ttl")
		mustWrite(t, s, statestore.Op{Key: k, Value: []byte(`1`), TTL: time.Second})
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := s.Get(ctx, k)
			if errors.Is(err, statestore.ErrNotFound) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatal("key with a 1 s TTL still there after 15 s")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func mustWrite(t *testing.T, s statestore.Store, op statestore.Op) {
	t.Helper()
	if err := s.Write(context.Background(), op); err != nil {
		t.Fatalf("write %q: %v", op.Key, err)
	}
}

func mustGet(t *testing.T, s statestore.Store, key string) statestore.Item {
	t.Helper()
	it, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return it
}
