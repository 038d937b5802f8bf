package daprstore

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/telemetry"
)

// Metrics times a service's state store calls
// (papo_state_operation_duration_seconds by store, operation and result).
// One Metrics serves every Store of a process.
type Metrics struct {
	vec *prometheus.HistogramVec
}

// NewMetrics registers the state store histogram on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "papo_state_operation_duration_seconds",
		Help: "Time of one state store call through the sidecar, by store, operation " +
			"(get, bulk_get, save, delete, transact) and result (ok, not_found, conflict, error).",
		Buckets: telemetry.LatencyBuckets,
	}, []string{"store", "operation", "result"})
	reg.MustRegister(vec)
	return &Metrics{vec: vec}
}

// Option configures a Store.
type Option func(*Store)

// WithMetrics times every call of the Store in m.
func WithMetrics(m *Metrics) Option { return func(s *Store) { s.metrics = m } }

// WithTracer makes a client span of every call of the Store.
func WithTracer(t trace.Tracer) Option { return func(s *Store) { s.tracer = t } }

type operation int

const (
	opGet operation = iota
	opBulkGet
	opSave
	opDelete
	opTransact
	numOps
)

var opNames = [numOps]string{"get", "bulk_get", "save", "delete", "transact"}

type result int

const (
	resultOK result = iota
	resultNotFound
	resultConflict
	resultError
	numResults
)

var resultNames = [numResults]string{"ok", "not_found", "conflict", "error"}

// observers are one Store's histograms, resolved once.
type observers [numOps][numResults]prometheus.Observer

func (m *Metrics) resolve(store string) *observers {
	var o observers
	for op := range numOps {
		for r := range numResults {
			o[op][r] = m.vec.WithLabelValues(store, opNames[op], resultNames[r])
		}
	}
	return &o
}

// call is one timed (and traced) store call.
type call struct {
	s     *Store
	op    operation
	start time.Time
	span  trace.Span
}

// begin starts timing op; the span, when the Store traces, is a child of
// ctx's, and the returned context carries it to the sidecar.
func (s *Store) begin(ctx context.Context, op operation, keys int) (context.Context, call) {
	c := call{s: s, op: op}
	if s.obs != nil {
		c.start = time.Now()
	}
	if s.tracer != nil && trace.SpanContextFromContext(ctx).IsValid() {
		ctx, c.span = s.tracer.Start(ctx, "state "+opNames[op], trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "dapr"), attribute.String("papo.store", s.name),
				attribute.Int("papo.keys", keys)))
	}
	return ctx, c
}

// end records the call's result.
func (c call) end(err error) {
	r := resultOK
	switch {
	case err == nil:
	case errors.Is(err, statestore.ErrNotFound):
		r = resultNotFound
	case errors.Is(err, statestore.ErrConflict):
		r = resultConflict
	default:
		r = resultError
	}
	if c.s.obs != nil {
		c.s.obs[c.op][r].Observe(time.Since(c.start).Seconds())
	}
	if c.span != nil {
		c.span.SetAttributes(attribute.String("papo.result", resultNames[r]))
		if r == resultError {
			c.span.SetStatus(codes.Error, err.Error())
		}
		c.span.End()
	}
}
