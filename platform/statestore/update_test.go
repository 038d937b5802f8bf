package statestore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
)

type counter struct {
	N int `json:"n"`
}

// TestUpdateAppliesEveryConcurrentChangeOnce: concurrent updates of one
// key, the first of them creating it, all land (conflicts re-read).
func TestUpdateAppliesEveryConcurrentChangeOnce(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := statestore.Update(ctx, s, "c", nil, func(c *counter, _ bool) bool { c.N++; return true }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var got counter
	if err := statestore.Update(ctx, s, "c", nil, func(c *counter, found bool) bool { got = *c; return !found }); err != nil {
		t.Fatal(err)
	}
	if got.N != 20 {
		t.Fatalf("n = %d, want 20", got.N)
	}
}

// TestUpdateWritesNothingWhenToldSoAndSetsTheTTL: change decides whether to
// write; ttl sets the key's expiry from the value written.
func TestUpdateWritesNothingWhenToldSoAndSetsTheTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := memstore.NewWithClock(func() time.Time { return now })
	if err := statestore.Update(ctx, s, "k", nil, func(*counter, bool) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("a change that declined wrote: %v", err)
	}
	ttl := func(c counter) time.Duration { return time.Duration(c.N) * time.Minute }
	if err := statestore.Update(ctx, s, "k", ttl, func(c *counter, _ bool) bool { c.N = 2; return true }); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("expired early: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Get(ctx, "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("not expired after its TTL: %v", err)
	}
}
