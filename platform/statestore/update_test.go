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
			if err := statestore.Update(ctx, s, "c", 0, func(c *counter, _ bool) bool { c.N++; return true }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var got counter
	if err := statestore.Update(ctx, s, "c", 0, func(c *counter, found bool) bool { got = *c; return !found }); err != nil {
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
	if err := statestore.Update(ctx, s, "k", 0, func(*counter, bool) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("a change that declined wrote: %v", err)
	}
	if err := statestore.Update(ctx, s, "k", 2*time.Minute, func(c *counter, _ bool) bool { c.N = 2; return true }); err != nil {
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

// conflicting answers every write with ErrConflict, counting them.
type conflicting struct {
	statestore.Store
	writes int
}

func (c *conflicting) Write(context.Context, statestore.Op) error {
	c.writes++
	return statestore.ErrConflict
}

// TestUpdateGivesUpAfterItsAttempts: a key that always conflicts is tried
// UpdateAttempts times, then the conflict is returned; a cancelled context
// stops the waiting between attempts.
func TestUpdateGivesUpAfterItsAttempts(t *testing.T) {
	s := &conflicting{Store: memstore.New()}
	bump := func(c *counter, _ bool) bool { c.N++; return true }
	if err := statestore.Update(context.Background(), s, "k", 0, bump); !errors.Is(err, statestore.ErrConflict) || s.writes != statestore.UpdateAttempts {
		t.Fatalf("got %v after %d writes, want ErrConflict after %d", err, s.writes, statestore.UpdateAttempts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.writes = 0
	if err := statestore.Update(ctx, s, "k", 0, bump); !errors.Is(err, context.Canceled) || s.writes != 1 {
		t.Fatalf("cancelled: got %v after %d writes, want context.Canceled after 1", err, s.writes)
	}
}
