package wait_test

import (
	"context"
	"testing"
	"time"

	"github.com/papochat/papo/platform/wait"
)

func TestForWaitsTheWholeDuration(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if !wait.For(context.Background(), 20*time.Millisecond) {
		t.Fatal("false without ctx ending")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("returned after %v, want at least 20ms", d)
	}
}

func TestForStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if wait.For(ctx, time.Hour) {
		t.Fatal("true with ctx ended")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("returned after %v, want at once", d)
	}
}

// TestEveryCallsUntilTheContextEnds: f runs on every tick, and Every
// returns once ctx ends.
func TestEveryCallsUntilTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait.Every(ctx, time.Millisecond, func() {
			if calls++; calls == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after ctx ended")
	}
	if calls != 3 {
		t.Fatalf("%d calls, want 3 (the last one ended ctx)", calls)
	}
}
