// Package presence reports this ws replica's connections to the presence
// service (docs/presence.md): each connect and disconnect as it happens,
// and the whole live set as a heartbeat every interval, which renews the
// replica's lease. Calls go one at a time and in order through Dapr
// service invocation; the hub only enqueues and never waits on them.
package presence

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/papochat/papo/platform/sidecar"
)

// Caller invokes a method on another app-id; *invoke.Client implements it.
type Caller interface {
	Do(ctx context.Context, appID, method, path string, header http.Header, in, out any) error
}

// Snapshot returns the replica's live set: user id → open connections.
type Snapshot func() map[string]int

// Config tunes a Reporter.
type Config struct {
	// Replica names this ws replica (APP_REPLICA); stable across restarts.
	Replica string
	// AppID is the presence service's app-id, default "presence".
	AppID string
	// Interval is the heartbeat period, default 8 s; presence's lease TTL
	// (20 s by default) must exceed two of them, to survive one lost heartbeat.
	Interval time.Duration
	// MaxQueue bounds the connects and disconnects waiting to be sent.
	// When presence is slow or down the queue is dropped and the next
	// heartbeat, a full snapshot, stands in for it. Default 10,000.
	MaxQueue int
}

type event struct {
	connect bool
	userID  string
	connID  string
}

// connBody is the body of POST /internal/v1/presence/connect and /disconnect.
type connBody struct {
	Replica string `json:"replica"`
	UserID  string `json:"user_id"`
	ConnID  string `json:"conn_id"`
}

// heartbeatBody is the body of POST /internal/v1/presence/heartbeat.
type heartbeatBody struct {
	Replica string         `json:"replica"`
	Users   map[string]int `json:"users"`
}

// Reporter sends presence reports for one replica.
type Reporter struct {
	cfg Config
	inv Caller
	log *slog.Logger

	mu     sync.Mutex
	queue  []event
	resync bool // a report was lost: send a heartbeat soon
	// failures counts heartbeats failed in a row (the first ones while the
	// stack starts are only debug).
	failures int
	wake     chan struct{}
	nextID   atomic.Uint64
}

// New returns a Reporter; Run sends its reports.
func New(cfg Config, inv Caller, log *slog.Logger) *Reporter {
	if cfg.AppID == "" {
		cfg.AppID = "presence"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 8 * time.Second
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 10_000
	}
	return &Reporter{cfg: cfg, inv: inv, log: log, wake: make(chan struct{}, 1)}
}

// Connected reports a new connection and returns its id, which
// Disconnected takes back. It never blocks.
func (r *Reporter) Connected(userID string) string {
	connID := r.cfg.Replica + "-" + strconv.FormatUint(r.nextID.Add(1), 36)
	r.enqueue(event{true, userID, connID})
	return connID
}

// Disconnected reports a closed connection. It never blocks.
func (r *Reporter) Disconnected(userID, connID string) { r.enqueue(event{false, userID, connID}) }

func (r *Reporter) enqueue(e event) {
	r.mu.Lock()
	if len(r.queue) >= r.cfg.MaxQueue {
		r.queue, r.resync = nil, true
	} else {
		r.queue = append(r.queue, e)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run sends a heartbeat of snapshot at once, then the queued reports as
// they come and a heartbeat every interval, until ctx is done; then it sends what is
// still queued (the disconnects of a graceful shutdown) within a few
// seconds, so those users go offline after the grace period rather than
// after the lease expires.
func (r *Reporter) Run(ctx context.Context, snapshot Snapshot) {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			r.drain(flushCtx)
			cancel()
			return
		case <-retry.C:
			r.heartbeat(ctx, snapshot)
		case <-tick.C:
			r.heartbeat(ctx, snapshot)
		case <-r.wake:
			r.drain(ctx)
		}
		r.mu.Lock()
		resync := r.resync
		r.mu.Unlock()
		if resync {
			retry.Reset(time.Second)
		}
	}
}

// heartbeat sends the live set. Reports queued before the snapshot are
// dropped: the snapshot already holds them.
func (r *Reporter) heartbeat(ctx context.Context, snapshot Snapshot) {
	r.mu.Lock()
	users := snapshot()
	r.queue, r.resync = nil, false
	r.mu.Unlock()
	if users == nil {
		users = map[string]int{}
	}
	err := r.inv.Do(ctx, r.cfg.AppID, http.MethodPost, "/internal/v1/presence/heartbeat", nil,
		heartbeatBody{Replica: r.cfg.Replica, Users: users}, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil || ctx.Err() != nil {
		r.failures = 0
		return
	}
	r.failures++
	r.log.Log(ctx, sidecar.RetryLevel(r.failures), "presence heartbeat failed; retrying", "users", len(users), "err", err)
	r.resync = true
}

// drain sends the queued reports in order, one at a time.
func (r *Reporter) drain(ctx context.Context) {
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return
		}
		e := r.queue[0]
		r.queue = r.queue[1:]
		r.mu.Unlock()
		path := "/internal/v1/presence/disconnect"
		if e.connect {
			path = "/internal/v1/presence/connect"
		}
		err := r.inv.Do(ctx, r.cfg.AppID, http.MethodPost, path, nil,
			connBody{Replica: r.cfg.Replica, UserID: e.userID, ConnID: e.connID}, nil)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("presence report failed; the next heartbeat repairs it", "path", path, "user_id", e.userID, "err", err)
			}
			// The heartbeat's snapshot stands in for every queued report.
			r.mu.Lock()
			r.queue, r.resync = nil, true
			r.mu.Unlock()
			return
		}
	}
}
