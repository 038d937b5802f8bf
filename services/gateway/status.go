package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
)

// backends are the services behind the gateway, in the order the status
// lists them.
var backends = []string{"auth", "message", "presence", "notification", "ws"}

// Service states in GET /api/v1/status and /readyz.
const (
	stateUp   = api.ServiceUp
	stateDown = api.ServiceDown
)

// statusBoard knows which services are up: it asks each one's /readyz
// through the gateway's sidecar (so it sees what a proxied call would
// meet: the app, its sidecar, the route between them) every interval, in
// the background, and remembers the answers. /readyz and /api/v1/status
// read the board, so probes and clients cost the services nothing.
type statusBoard struct {
	inv      *invoke.Client
	sidecar  httpapi.Check
	interval time.Duration
	log      *slog.Logger

	mu    sync.RWMutex
	state map[string]string
}

func newStatusBoard(inv *invoke.Client, sidecar httpapi.Check, interval time.Duration, log *slog.Logger) *statusBoard {
	b := &statusBoard{inv: inv, sidecar: sidecar, interval: interval, log: log, state: map[string]string{}}
	b.state["gateway"] = stateDown
	for _, id := range backends {
		b.state[id] = stateDown // until the first check says otherwise
	}
	return b
}

// run checks every service each interval until ctx ends.
func (b *statusBoard) run(ctx context.Context) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		b.checkAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkAll checks the gateway's sidecar and every service at once, each
// within the interval (at least a second).
func (b *statusBoard) checkAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(b.interval, time.Second))
	defer cancel()
	var wg sync.WaitGroup
	check := func(name string, f func(context.Context) error) {
		defer wg.Done()
		err := f(ctx)
		if errors.Is(ctx.Err(), context.Canceled) {
			return // shutting down: the board stays as it was
		}
		b.set(name, err)
	}
	wg.Add(1 + len(backends))
	go check("gateway", b.sidecar)
	for _, id := range backends {
		go check(id, func(ctx context.Context) error {
			return b.inv.Do(ctx, id, http.MethodGet, "/readyz", nil, nil, nil)
		})
	}
	wg.Wait()
}

func (b *statusBoard) set(name string, err error) {
	now := stateUp
	if err != nil {
		now = stateDown
	}
	b.mu.Lock()
	was := b.state[name]
	b.state[name] = now
	b.mu.Unlock()
	switch {
	case was == now:
	case now == stateDown:
		b.log.Warn("service down", "service", name, "err", err)
	default:
		b.log.Info("service up", "service", name)
	}
}

// snapshot returns every service's state.
func (b *statusBoard) snapshot() map[string]string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return maps.Clone(b.state)
}

// checks are the board as readiness checks: one per service, failing
// while it is down. The text names no address.
func (b *statusBoard) checks() map[string]httpapi.Check {
	out := map[string]httpapi.Check{"sidecar": b.sidecar}
	for _, id := range backends {
		out[id] = func(context.Context) error {
			b.mu.RLock()
			defer b.mu.RUnlock()
			if b.state[id] != stateUp {
				return errServiceDown
			}
			return nil
		}
	}
	return out
}

// errServiceDown is a down service's readiness failure; /readyz shows
// its text.
var errServiceDown = errors.New("unavailable")

// handleStatus answers GET /api/v1/status.
func handleStatus(b *statusBoard) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := api.ServiceStatus{Status: "ok", Services: b.snapshot()}
		for _, s := range resp.Services {
			if s != stateUp {
				resp.Status = "degraded"
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.Encode(w, http.StatusOK, resp)
	})
}

// handleReadyz answers GET /readyz: 200 when the gateway's sidecar and
// every service are up, 503 naming what is not. ?scope=gateway checks
// the gateway's own sidecar alone, for a load balancer that must not take
// every gateway out of service because one service behind them is down.
func handleReadyz(b *statusBoard) http.Handler {
	all := httpapi.Readyz(b.checks())
	own := httpapi.Readyz(map[string]httpapi.Check{"sidecar": b.sidecar})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("scope") == "gateway" {
			own.ServeHTTP(w, r)
			return
		}
		all.ServeHTTP(w, r)
	})
}
