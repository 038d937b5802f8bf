// Package hub is the ws service's core: it accepts WebSocket connections,
// routes persisted room events and ephemeral signals to them in seq order
// with no duplicate and no hole, and turns client frames into submissions.
//
// The hub sees the rest of papo through small interfaces (Publisher,
// Messages, Sessions, authn.TokenVerifier); platform/pubsub and package
// upstream adapt them to Dapr. It may depend on api and platform only.
package hub

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
)

// Publisher publishes one JSON payload to a pub/sub topic. key, when not
// empty, is its partition key (events.PartitionKeyMetadata): payloads of
// one key keep their order on a broker that partitions the topic.
type Publisher interface {
	PublishJSON(ctx context.Context, pubsub, topic, key string, data []byte) error
}

// Messages is what the hub asks of the message service.
type Messages interface {
	// UserRooms returns the rooms userID belongs to with their last seq.
	UserRooms(ctx context.Context, userID string) ([]api.RoomCursor, error)
	// EventsAfter returns up to limit events of roomID with seq > after,
	// ascending.
	EventsAfter(ctx context.Context, roomID string, after int64, limit int) ([]api.Event, error)
	// MarkRead moves userID's read marker in roomID to seq.
	MarkRead(ctx context.Context, roomID, userID string, seq int64) error
	// Submit hands submissions to the message service and returns what
	// became of each, in order, once each is stored or refused.
	Submit(ctx context.Context, batch events.SubmissionBatch) (events.SubmitResult, error)
}

// Sessions is what the hub asks of the auth service.
type Sessions interface {
	// Check returns nil when the session is live, and an Unauthenticated
	// *apierror.Error when it was revoked or does not exist.
	Check(ctx context.Context, sessionID string) error
}

// Config holds the hub's limits. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may open a socket. A request without Origin (a non-browser client)
	// is always allowed.
	AllowedOrigins []string
	// MaxConnsPerUser caps a user's sockets on this replica.
	MaxConnsPerUser int
	// QueueBytes bounds a connection's outgoing queue; overflowing it
	// disconnects the client with api.CloseSlowConsumer.
	QueueBytes int
	// WriteTimeout is the deadline of one frame write; missing it
	// disconnects the client with api.CloseSlowConsumer.
	WriteTimeout time.Duration
	// PingInterval is how often the server pings; a client that answered
	// nothing (no pong, no frame) for PongWait is disconnected at the next
	// ping.
	PingInterval time.Duration
	PongWait     time.Duration
	// MaxFrameBytes is the protocol's frame limit: a larger frame is
	// answered with a frame_too_large error and discarded.
	MaxFrameBytes int
	// HardFrameBytes is the read limit of the socket: a larger frame closes
	// it with 1009, since reading it at all would be the abuse.
	HardFrameBytes int64
	// Rate and Burst shape each connection's token bucket of client frames.
	Rate  float64
	Burst int
	// StrikeRate and StrikeBurst bound refused frames: a client refused
	// more than StrikeBurst times plus StrikeRate per second is closed
	// with api.ClosePolicy.
	StrikeRate  float64
	StrikeBurst int
	// LiveHold is how long after hello live room events wait for the
	// client's first frame, so a resume sent at once is applied before any
	// live event and nothing is delivered twice. A client that resumes
	// nothing sends {"type":"resume","rooms":{}} and waits for nothing;
	// signals (typing, presence) are never held.
	LiveHold time.Duration
	// TypingEvery throttles typing signals per user per room.
	TypingEvery time.Duration
	// SubmitQueue bounds submissions waiting to be handed to the message
	// service; MaxBatch bounds submissions per call (and typing signals
	// per pub/sub message); SubmitInflight bounds the calls in flight
	// (two: one being stored while the next gathers what arrives; the
	// message service commits whatever reached it together anyway, so more
	// calls only cost sidecar work).
	// BatchWindow optionally waits that long for more signals before
	// publishing them.
	SubmitQueue    int
	MaxBatch       int
	SubmitInflight int
	BatchWindow    time.Duration
	// HistoryPage is the page size of gap and resume fetches.
	HistoryPage int
	// PendingAcks caps sends awaiting their ack per connection.
	PendingAcks int
	// Replica names this replica in its spans.
	Replica string
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		MaxConnsPerUser: 16,
		QueueBytes:      1 << 20,
		WriteTimeout:    10 * time.Second,
		PingInterval:    25 * time.Second,
		PongWait:        60 * time.Second,
		MaxFrameBytes:   32 << 10,
		HardFrameBytes:  1 << 20,
		Rate:            20,
		Burst:           40,
		StrikeRate:      1,
		StrikeBurst:     40,
		LiveHold:        500 * time.Millisecond,
		TypingEvery:     2 * time.Second,
		SubmitQueue:     8192,
		MaxBatch:        256,
		SubmitInflight:  2,
		HistoryPage:     api.MaxPageLimit,
		PendingAcks:     512,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&c.MaxConnsPerUser, d.MaxConnsPerUser)
	set(&c.QueueBytes, d.QueueBytes)
	setD(&c.WriteTimeout, d.WriteTimeout)
	setD(&c.PingInterval, d.PingInterval)
	setD(&c.PongWait, d.PongWait)
	set(&c.MaxFrameBytes, d.MaxFrameBytes)
	if c.HardFrameBytes <= int64(c.MaxFrameBytes) {
		c.HardFrameBytes = max(d.HardFrameBytes, int64(c.MaxFrameBytes)*2)
	}
	if c.Rate <= 0 {
		c.Rate = d.Rate
	}
	set(&c.Burst, d.Burst)
	if c.StrikeRate <= 0 {
		c.StrikeRate = d.StrikeRate
	}
	set(&c.StrikeBurst, d.StrikeBurst)
	if c.LiveHold < 0 {
		c.LiveHold = 0
	} else if c.LiveHold == 0 {
		c.LiveHold = d.LiveHold
	}
	setD(&c.TypingEvery, d.TypingEvery)
	set(&c.SubmitQueue, d.SubmitQueue)
	set(&c.MaxBatch, d.MaxBatch)
	set(&c.SubmitInflight, d.SubmitInflight)
	set(&c.HistoryPage, d.HistoryPage)
	set(&c.PendingAcks, d.PendingAcks)
	return c
}

// Deps are the hub's collaborators.
type Deps struct {
	Verifier  authn.TokenVerifier
	Sessions  Sessions
	Messages  Messages
	Publisher Publisher
	Log       *slog.Logger
	// Presence, when set, is told of every socket opened and closed.
	Presence PresenceReporter
	// Metrics, when set, are where the hub counts (NewMetrics); Traces,
	// when set, traces sends and deliveries.
	Metrics *Metrics
	Traces  trace.TracerProvider
}

// PresenceReporter reports sockets to the presence service
// (internal/presence). Both calls must return at once: they are made on
// the socket's goroutine.
type PresenceReporter interface {
	// Connected reports a socket of userID and returns its id.
	Connected(userID string) (connID string)
	Disconnected(userID, connID string)
}

// Hub owns every connection of this replica.
type Hub struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	upgrader websocket.Upgrader
	origins  map[string]bool

	rooms roomTable
	users userTable

	submits *submitter
	signals *batcher

	ctx     context.Context
	cancel  context.CancelFunc
	closing atomic.Bool
	conns   sync.WaitGroup // one per connection, done when its reader and last writer ended
	workers sync.WaitGroup // gap fills, catch-ups and batchers
	spawnMu sync.Mutex     // orders spawn against Shutdown's wait
	stopped bool           // guarded by spawnMu

	stats   Stats
	metrics *Metrics
	tracer  trace.Tracer
	tracing bool
}

// Stats counts what happened to connections, for tests and metrics.
type Stats struct {
	Open          atomic.Int64
	SlowConsumers atomic.Int64
	PolicyCloses  atomic.Int64
	GapFills      atomic.Int64
	CatchUps      atomic.Int64 // catch-ups of every room after a subscription break
	Published     atomic.Int64 // calls that handed submissions over (or publishes of them)
	Submitted     atomic.Int64 // submissions inside them
	queued        func() int
}

// Queued returns how many submissions wait to be handed over.
func (s *Stats) Queued() int { return s.queued() }

// New returns a Hub. Its background work (publish batchers, gap fills)
// runs until Shutdown.
func New(cfg Config, deps Deps) *Hub {
	cfg = cfg.withDefaults()
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if deps.Traces == nil {
		deps.Traces = noop.NewTracerProvider()
	}
	_, tracesOff := deps.Traces.(noop.TracerProvider)
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Log,
		origins: map[string]bool{},
		ctx:     ctx,
		cancel:  cancel,
		metrics: deps.Metrics,
		tracer:  deps.Traces.Tracer("papo/ws"),
		tracing: !tracesOff,
	}
	for _, o := range cfg.AllowedOrigins {
		if o = normalizeOrigin(o); o != "" {
			h.origins[o] = true
		}
	}
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:    512, // client frames are small; a larger one is read straight into its own buffer
		WriteBufferPool:   &sync.Pool{},
		EnableCompression: false,
		// The origin is checked before the upgrade, with a 403 body.
		CheckOrigin:  func(*http.Request) bool { return true },
		Subprotocols: []string{api.Subprotocol},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			httpapi.Encode(w, status, httpapi.ErrorBody{Error: httpapi.ErrorDetail{Code: "bad_handshake", Message: reason.Error()}})
		},
	}
	h.rooms.init()
	h.users.init()
	h.submits = newSubmitter(h, cfg.SubmitQueue, cfg.MaxBatch, cfg.SubmitInflight)
	h.stats.queued = func() int { return int(h.submits.waiting.Load()) }
	h.signals = newBatcher(h, cfg.SubmitQueue, cfg.MaxBatch, cfg.BatchWindow, h.publishSignals)
	h.metrics.bind(h)
	return h
}

// Stats returns the hub's counters.
func (h *Hub) Stats() *Stats { return &h.stats }

// UserConns returns how many sockets userID has on this replica.
func (h *Hub) UserConns(userID string) int { return h.users.count(userID) }

// LiveUsers returns every user with a socket on this replica and how many
// sockets each has: the presence heartbeat.
func (h *Hub) LiveUsers() map[string]int {
	out := map[string]int{}
	for i := range h.users.s {
		s := &h.users.s[i]
		s.mu.Lock()
		for id, u := range s.users {
			if len(u.conns) > 0 {
				out[id] = len(u.conns)
			}
		}
		s.mu.Unlock()
	}
	return out
}

// Shutdown stops accepting sockets, closes every open one with 1001 going
// away, and waits until they are gone or ctx ends; then it stops the
// hub's background work.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	h.users.each(func(c *conn) { c.close(websocket.CloseGoingAway, "server shutting down") })
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("drain websockets: %w", ctx.Err())
	}
	// Submissions already queued are still published before stopping.
	h.submits.stop()
	h.signals.stop()
	h.spawnMu.Lock()
	h.stopped = true
	h.spawnMu.Unlock()
	h.cancel()
	h.workers.Wait()
	return err
}

// spawn runs f on a goroutine the hub waits for at Shutdown; after
// Shutdown began it runs nothing and returns false.
func (h *Hub) spawn(f func()) bool {
	h.spawnMu.Lock()
	defer h.spawnMu.Unlock()
	if h.stopped {
		return false
	}
	h.workers.Add(1)
	go func() {
		defer h.workers.Done()
		f()
	}()
	return true
}

// encode marshals a frame; frames are plain structs, so it cannot fail.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode frame %T: %v", v, err))
	}
	return b
}
