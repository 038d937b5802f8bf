package hub

import (
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/telemetry"
)

// Metrics are the hub's Prometheus metrics (docs/ops.md lists each). Label
// values are resolved once: counting a frame is one atomic add, and a
// delivery's latency one histogram observation, with no lookup. Counters
// the hub keeps anyway (Stats) are exported as they are, read at scrape.
type Metrics struct {
	reg prometheus.Registerer

	opened    prometheus.Counter
	closes    map[int]prometheus.Counter
	otherCode prometheus.Counter
	framesIn  [numInKinds]prometheus.Counter
	framesOut [numOutKinds]prometheus.Counter
	delivery  prometheus.Observer
	fanoutLag prometheus.Observer
	submit    [2]prometheus.Observer // ok, error
	batchSize prometheus.Observer

	refusalVec *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	codesMu    sync.Mutex
	refusals   map[string]prometheus.Counter
	refusedHS  map[string]prometheus.Counter
}

// maxCodes bounds the distinct error codes counted by name; more become
// "other" (codes come from a fixed list, but from another service too).
const maxCodes = 64

// inKind is the type of a client frame.
type inKind uint8

const (
	inSend inKind = iota
	inEdit
	inDelete
	inTyping
	inRead
	inResume
	inAuth
	inPing
	inOther // unknown or missing type
	inInvalid
	numInKinds
)

var inNames = [numInKinds]string{"send", "edit", "delete", "typing", "read", "resume", "auth", "ping", "unknown", "invalid"}

func inKindOf(t string) inKind {
	switch t {
	case api.FrameSend:
		return inSend
	case api.FrameEdit:
		return inEdit
	case api.FrameDelete:
		return inDelete
	case api.FrameTyping:
		return inTyping
	case api.FrameRead:
		return inRead
	case api.FrameResume:
		return inResume
	case api.FrameAuth:
		return inAuth
	case api.FramePing:
		return inPing
	}
	return inOther
}

// outKind is the type of a server frame.
type outKind uint8

const (
	outEvent outKind = iota
	outAck
	outError
	outHello
	outTyping
	outPresence
	outPong
	numOutKinds
)

var outNames = [numOutKinds]string{api.FrameEvent, api.FrameAck, api.FrameError, api.FrameHello, api.FrameTyping, api.FramePresence, api.FramePong}

// closeCodes are the codes the hub closes sockets with.
var closeCodes = []int{websocket.CloseNormalClosure, websocket.CloseGoingAway, api.ClosePolicy, websocket.CloseMessageTooBig,
	websocket.CloseInternalServerErr, websocket.CloseAbnormalClosure, api.CloseSlowConsumer, api.CloseTokenExpired,
	api.CloseSessionRevoked, api.CloseTooManyConns}

// NewMetrics registers the hub's metrics on reg; the hub given them in
// Deps adds the ones it reads at scrape time.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{reg: reg, closes: map[int]prometheus.Counter{}, refusals: map[string]prometheus.Counter{}, refusedHS: map[string]prometheus.Counter{}}
	opened := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_ws_connections_opened_total", Help: "WebSockets accepted by this replica.",
	})
	closes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_ws_disconnects_total", Help: "WebSockets closed by this replica, by close code (docs/protocol.md).",
	}, []string{"code"})
	in := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_ws_frames_received_total", Help: "Client frames received, by type (unknown: no known type; invalid: not a JSON frame).",
	}, []string{"type"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_ws_frames_sent_total", Help: "Server frames written to sockets, by type.",
	}, []string{"type"})
	delivery := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "papo_ws_delivery_latency_seconds",
		Help: "End-to-end delivery latency: from an event's commit by the message service (its created_at) " +
			"to its frame being written to a socket, for live deliveries.",
		Buckets: telemetry.LatencyBuckets,
	})
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "papo_ws_fanout_lag_seconds",
		Help:    "Fan-out lag: from the commit of a room.events batch's newest event to the batch reaching this replica.",
		Buckets: telemetry.LatencyBuckets,
	})
	submit := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "papo_ws_submit_duration_seconds",
		Help:    "Time of one call handing submissions to the message service (until each is stored or refused), by result.",
		Buckets: telemetry.LatencyBuckets,
	}, []string{"result"})
	size := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "papo_ws_submit_batch_size", Help: "Submissions handed over in one call.", Buckets: telemetry.SizeBuckets,
	})
	m.refusalVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_ws_refusals_total", Help: "Error frames sent to clients, by code (docs/protocol.md).",
	}, []string{"code"})
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_ws_handshake_refusals_total", Help: "WebSocket handshakes refused with an HTTP error, by code.",
	}, []string{"code"})
	reg.MustRegister(opened, closes, in, out, delivery, lag, submit, size, m.refusalVec, m.handshakes)
	m.opened, m.delivery, m.fanoutLag, m.batchSize = opened, delivery, lag, size
	for _, c := range closeCodes {
		m.closes[c] = closes.WithLabelValues(strconv.Itoa(c))
	}
	m.otherCode = closes.WithLabelValues("other")
	for i := range numInKinds {
		m.framesIn[i] = in.WithLabelValues(inNames[i])
	}
	for i := range numOutKinds {
		m.framesOut[i] = out.WithLabelValues(outNames[i])
	}
	m.submit[0], m.submit[1] = submit.WithLabelValues("ok"), submit.WithLabelValues("error")
	// The codes the hub itself answers exist from the start (at 0), so a
	// dashboard or rule finds them before the first refusal.
	for _, code := range []string{"missing_field", "invalid_json", "not_a_member", "rate_limited", "server_busy",
		"too_many_pending", "frame_too_large", "unknown_type", "unavailable"} {
		m.byCode(m.refusals, m.refusalVec, code)
	}
	for _, code := range []string{"missing_token", "invalid_token", "origin_not_allowed", "shutting_down"} {
		m.byCode(m.refusedHS, m.handshakes, code)
	}
	return m
}

// bind adds the metrics read from h at scrape time.
func (m *Metrics) bind(h *Hub) {
	counter := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, v)
	}
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	s := &h.stats
	m.reg.MustRegister(
		gauge("papo_ws_connections", "Open WebSockets on this replica.", func() float64 { return float64(s.Open.Load()) }),
		gauge("papo_ws_queue_bytes", "Bytes waiting in the outgoing queues of every socket of this replica.",
			func() float64 { return float64(h.queuedBytes()) }),
		gauge("papo_ws_submit_queue", "Submissions waiting to be handed to the message service.",
			func() float64 { return float64(s.Queued()) }),
		counter("papo_ws_slow_consumer_disconnects_total", "Sockets cut off as slow consumers (queue overflow or write deadline).",
			func() float64 { return float64(s.SlowConsumers.Load()) }),
		counter("papo_ws_policy_closes_total", "Sockets closed for abuse (too many refused frames).",
			func() float64 { return float64(s.PolicyCloses.Load()) }),
		counter("papo_ws_gap_fills_total", "Fetches of missing room events from the message service (a fan-out message was lost or late).",
			func() float64 { return float64(s.GapFills.Load()) }),
		counter("papo_ws_submit_calls_total", "Calls (or fallback publishes) handing submissions over.",
			func() float64 { return float64(s.Published.Load()) }),
		counter("papo_ws_submissions_total", "Submissions handed over to the message service.",
			func() float64 { return float64(s.Submitted.Load()) }),
	)
}

// closed counts a socket closed with code.
func (m *Metrics) closed(code int) {
	if c, ok := m.closes[code]; ok {
		c.Inc()
		return
	}
	m.otherCode.Inc()
}

// refused counts an error frame with code.
func (m *Metrics) refused(code string) { m.byCode(m.refusals, m.refusalVec, code).Inc() }

// handshakeRefused counts a handshake refused with code.
func (m *Metrics) handshakeRefused(code string) { m.byCode(m.refusedHS, m.handshakes, code).Inc() }

func (m *Metrics) byCode(cache map[string]prometheus.Counter, vec *prometheus.CounterVec, code string) prometheus.Counter {
	m.codesMu.Lock()
	defer m.codesMu.Unlock()
	c, ok := cache[code]
	if !ok {
		if len(cache) >= maxCodes {
			code = "other"
			if c, ok = cache[code]; ok {
				return c
			}
		}
		c = vec.WithLabelValues(code)
		cache[code] = c
	}
	return c
}

// batchArrived records the fan-out lag of a room.events batch: from the
// commit of its newest event (a batch may repeat older ones) to now.
func (m *Metrics) batchArrived(evs []api.Event) {
	var newest time.Time
	for i := range evs {
		if evs[i].CreatedAt.After(newest) {
			newest = evs[i].CreatedAt
		}
	}
	if !newest.IsZero() {
		m.fanoutLag.Observe(time.Since(newest).Seconds())
	}
}

// wrote counts a frame written to a socket; an event frame's delivery
// latency is measured from committed (unix nanoseconds, 0 when the frame
// is not a live event).
func (m *Metrics) wrote(f frame) {
	m.framesOut[f.kind].Inc()
	if f.committed != 0 {
		m.delivery.Observe(float64(time.Now().UnixNano()-f.committed) / 1e9)
	}
}

// queuedBytes sums the outgoing queues of every socket (at scrape time,
// so a push costs nothing more).
func (h *Hub) queuedBytes() int {
	total := 0
	h.users.each(func(c *conn) { total += c.out.bytes() })
	return total
}
