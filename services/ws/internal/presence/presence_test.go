package presence_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/services/ws/internal/presence"
)

// caller records each call as "path body" and can be made to fail.
type caller struct {
	mu    sync.Mutex
	calls []string
	fail  bool
	seen  chan struct{}
}

func newCaller() *caller { return &caller{seen: make(chan struct{}, 1000)} }

func (c *caller) Do(_ context.Context, appID, method, path string, _ http.Header, in, _ any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if appID != "presence" || method != http.MethodPost {
		return fmt.Errorf("unexpected %s %s %s", appID, method, path)
	}
	c.calls = append(c.calls, fmt.Sprintf("%s %+v", path, in))
	c.seen <- struct{}{}
	if c.fail {
		return errors.New("presence down")
	}
	return nil
}

func (c *caller) setFail(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = v
}

func (c *caller) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// wait blocks until n more calls were made, or fails the test.
func (c *caller) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.seen:
		case <-time.After(5 * time.Second):
			t.Fatalf("fewer than %d calls", n)
		}
	}
}

type live struct {
	mu    sync.Mutex
	users map[string]int
}

func (l *live) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.users {
		out[k] = v
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestReportsInOrderAfterAFirstHeartbeatAndFlushesOnStop(t *testing.T) {
	c := newCaller()
	l := &live{users: map[string]int{"alice": 1}}
	r := presence.New(presence.Config{Replica: "ws-1", Interval: time.Hour}, c, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, l.snapshot) }()
	c.wait(t, 1)
	id1 := r.Connected("bob")
	id2 := r.Connected("bob")
	c.wait(t, 2)
	if id1 == id2 {
		t.Fatalf("connection ids repeat: %s", id1)
	}
	r.Disconnected("bob", id1)
	cancel() // a queued disconnect is still sent on the way out
	<-done
	got := c.take()
	want := []string{
		"/internal/v1/presence/heartbeat {Replica:ws-1 Users:map[alice:1]}",
		"/internal/v1/presence/connect {Replica:ws-1 UserID:bob ConnID:" + id1 + "}",
		"/internal/v1/presence/connect {Replica:ws-1 UserID:bob ConnID:" + id2 + "}",
		"/internal/v1/presence/disconnect {Replica:ws-1 UserID:bob ConnID:" + id1 + "}",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("calls:\n%q\nwant\n%q", got, want)
	}
}

func TestALostReportIsRepairedByAHeartbeatSoon(t *testing.T) {
	c := newCaller()
	l := &live{users: map[string]int{}}
	r := presence.New(presence.Config{Replica: "ws-1", Interval: time.Hour}, c, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, l.snapshot)
	c.wait(t, 1)
	c.take()
	c.setFail(true)
	l.mu.Lock()
	l.users["bob"] = 1
	l.mu.Unlock()
	r.Connected("bob")
	c.wait(t, 1) // the connect fails
	c.setFail(false)
	c.wait(t, 1) // a heartbeat follows within about a second, not an hour
	got := c.take()
	if len(got) != 2 || got[1] != "/internal/v1/presence/heartbeat {Replica:ws-1 Users:map[bob:1]}" {
		t.Fatalf("calls %q", got)
	}
}
