package throttle

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/statestore/memstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestFreeFailuresThenGrowingBackoffUpToTheCap(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(Policy{Free: 3, Base: time.Second, Max: 8 * time.Second, Forget: time.Hour}, c.now)
	var got []time.Duration
	for range 8 {
		got = append(got, l.Fail("u:alice"))
	}
	want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("failure %d: got block %v, want %v (all: %v)", i+1, got[i], want[i], got)
		}
	}
	if d := l.Blocked("u:alice"); d != 8*time.Second {
		t.Fatalf("Blocked = %v, want 8s", d)
	}
	if d := l.Blocked("u:bob"); d != 0 {
		t.Fatalf("another key is blocked for %v", d)
	}
	c.add(8 * time.Second)
	if d := l.Blocked("u:alice"); d != 0 {
		t.Fatalf("still blocked %v after the block ran out", d)
	}
}

func TestResetForgivesAndForgetExpires(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(Policy{Free: 1, Base: time.Second, Max: time.Minute, Forget: 10 * time.Minute}, c.now)
	l.Fail("k")
	l.Fail("k")
	l.Reset("k")
	if d := l.Fail("k"); d != 0 {
		t.Fatalf("after Reset the first failure blocks %v", d)
	}
	c.add(10 * time.Minute)
	if d := l.Fail("k"); d != 0 {
		t.Fatalf("failures older than Forget still count: block %v", d)
	}
}

func TestSweepDropsForgottenKeys(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(Policy{Free: 5, Base: time.Second, Max: time.Minute, Forget: time.Minute}, c.now)
	for _, k := range []string{"a", "b", "c"} {
		l.Fail(k)
	}
	c.add(2 * time.Minute)
	l.Fail("d")
	if n := l.Len(); n != 1 {
		t.Fatalf("got %d keys after a sweep, want 1", n)
	}
}

func TestStoreKnownRemembersPairsWithoutStoringAddresses(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	k := StoreKnown{Store: store, TTL: time.Hour}
	if err := k.Remember(ctx, "alice", "203.0.113.7"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, addr string
		want       bool
	}{
		{"alice", "203.0.113.7", true},
		{"alice", "203.0.113.8", false},
		{"bob", "203.0.113.7", false},
	} {
		got, err := k.Known(ctx, tc.user, tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("Known(%s, %s) = %v, %v; want %v", tc.user, tc.addr, got, err, tc.want)
		}
	}
	it, err := store.Get(ctx, knownKey("alice", "203.0.113.7"))
	if err != nil || strings.Contains(it.Key+string(it.Value), "203.0.113.7") {
		t.Fatalf("stored %q = %q (%v): the address is in the store", it.Key, it.Value, err)
	}
}
