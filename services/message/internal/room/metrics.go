package room

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/papochat/papo/platform/telemetry"
)

// Metrics observes the writer's rounds and the two stages that follow
// them (docs/ops.md lists each metric). Label values are resolved once,
// here: a round costs a few atomic adds.
type Metrics struct {
	rounds      prometheus.Counter
	roundSize   prometheus.Observer
	roundTime   prometheus.Observer
	stages      [numStages]prometheus.Observer
	stageRounds [numStages]prometheus.Observer // the announcer's and materializer's only
	conflicts   prometheus.Counter
	requeued    prometheus.Counter
	appended    prometheus.Counter
	outcomes    [numOutcomes]prometheus.Counter
	submitTime  prometheus.Observer
	deadLetters prometheus.Counter
	// memberRereads counts rounds that read member keys again because
	// the remembered membership was stale (membercache.go); rode and
	// alone count materializations by how their events went: riding on
	// the next round's head transaction, or in one of their own (ride.go).
	memberRereads prometheus.Counter
	rode, alone   prometheus.Counter
}

// roundStage is one stage of the append path: the three of a round
// (writer.go), then the announcer's and the materializer's (pipeline.go),
// each of which takes every committed round that waits in one call.
type roundStage int

const (
	stageRead        roundStage = iota // one BulkGet of the round's keys
	stageDecide                        // materialize foreign heads, decide, replays
	stageCommit                        // the guarded write of the changed heads
	stageAnnounce                      // one call of the announcer: room.events (and dead letters)
	stageMaterialize                   // one call of the materializer: events, idempotency keys, read markers
	numStages
)

var stageNames = [numStages]string{"read", "decide", "commit", "announce", "materialize"}

// outcome is what became of one submission in a round.
type outcome int

const (
	outcomeStored  outcome = iota // a new event
	outcomeRepeat                 // stored before under the same client_id
	outcomeRefused                // refused with a code
	outcomeFailed                 // the round failed; the caller retries
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"stored", "repeat", "refused", "failed"}

// NewMetrics registers the writer's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	rounds := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_message_rounds_total", Help: "Commit rounds of the message writer.",
	})
	size := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "papo_message_round_submissions", Help: "Submissions taken by one commit round.",
		Buckets: telemetry.SizeBuckets,
	})
	roundTime := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "papo_message_round_duration_seconds", Help: "Time of one commit round, from its read to the write of its heads (announcing and materializing follow).",
		Buckets: telemetry.LatencyBuckets,
	})
	stages := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "papo_message_round_stage_duration_seconds",
		Help: "Time of each stage of the append path: read, decide and commit once per round; " +
			"announce and materialize once per call, which takes every committed round that waits.",
		Buckets: telemetry.LatencyBuckets,
	}, []string{"stage"})
	stageRounds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "papo_message_stage_rounds",
		Help:    "Committed rounds one call of the announcer or the materializer took (a call that only writes due read markers takes none and is not counted).",
		Buckets: telemetry.SizeBuckets,
	}, []string{"stage"})
	conflicts := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_message_head_conflicts_total",
		Help: "Room heads whose guarded write lost an ETag race (another replica wrote the room first).",
	})
	requeued := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_message_requeued_submissions_total",
		Help: "Submissions put back in the queue after their room lost an ETag race.",
	})
	appended := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_message_appended_events_total",
		Help: "Events appended to room logs by submissions (messages, edits, deletes).",
	})
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_message_submissions_total",
		Help: "Submissions settled by the writer, by outcome: stored, repeat (same client_id), refused, failed.",
	}, []string{"outcome"})
	submitTime := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "papo_message_append_duration_seconds",
		Help:    "Time from a batch of submissions reaching the writer to every one being stored or refused.",
		Buckets: telemetry.LatencyBuckets,
	})
	dead := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_message_dead_letters_total",
		Help: "Submissions published to messages.deadletter (refused, never storable).",
	})
	rereads := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "papo_message_member_rereads_total",
		Help: "Rounds that read senders' member keys in a second BulkGet because the replica's memory of the room's membership was stale.",
	})
	rides := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_message_materializations_total",
		Help: "Materializations of committed tails, by how their events and idempotency keys were written: rode (in the next round's head transaction) or alone.",
	}, []string{"how"})
	reg.MustRegister(rounds, size, roundTime, stages, stageRounds, conflicts, requeued, appended, outcomes, submitTime, dead, rereads, rides)
	m.memberRereads = rereads
	m.rode, m.alone = rides.WithLabelValues("rode"), rides.WithLabelValues("alone")
	m.rounds, m.roundSize, m.roundTime = rounds, size, roundTime
	for i := range numStages {
		m.stages[i] = stages.WithLabelValues(stageNames[i])
	}
	for _, st := range []roundStage{stageAnnounce, stageMaterialize} {
		m.stageRounds[st] = stageRounds.WithLabelValues(stageNames[st])
	}
	for i := range numOutcomes {
		m.outcomes[i] = outcomes.WithLabelValues(outcomeNames[i])
	}
	m.conflicts, m.requeued, m.appended, m.submitTime, m.deadLetters = conflicts, requeued, appended, submitTime, dead
	return m
}

// SetTelemetry makes the Service record its rounds in m and trace them
// with tracer (nil keeps what it had). Call it before use.
func (s *Service) SetTelemetry(m *Metrics, tracer trace.Tracer) {
	if m != nil {
		s.metrics = m
	}
	if tracer != nil {
		s.tracer = tracer
	}
}

// discardMetrics are the metrics of a Service nobody observes.
func discardMetrics() *Metrics { return NewMetrics(prometheus.NewRegistry()) }

func noTracer() trace.Tracer { return noop.NewTracerProvider().Tracer("") }

// timeStage starts one stage of a round: a child span of ctx's, and a
// timer; the returned function ends both.
func (w *writer) timeStage(ctx context.Context, st roundStage) (context.Context, func()) {
	start := time.Now()
	ctx, span := w.s.tracer.Start(ctx, "round "+stageNames[st])
	return ctx, func() {
		w.s.metrics.stages[st].Observe(time.Since(start).Seconds())
		span.End()
	}
}

// roundSpan starts a round's span: the child of its first submission's
// caller, linked to the other callers.
func (w *writer) roundSpan(batch []*queued) (context.Context, trace.Span) {
	scs := make([]trace.SpanContext, len(batch))
	for i, q := range batch {
		scs[i] = q.sc
	}
	return w.s.tracer.Start(joined(context.Background(), scs), "message round", trace.WithLinks(links(scs)...))
}

// pipelineStage starts one call of the announcer or the materializer over
// rounds: a span under the first traced round's, linked to the other
// rounds (one publish or one transaction serves them all), and a timer;
// the returned function ends both and counts the rounds the call took.
func (w *writer) pipelineStage(ctx context.Context, st roundStage, rounds []*committedRound) (context.Context, func()) {
	start := time.Now()
	var scs []trace.SpanContext
	for _, c := range rounds {
		if !c.flushMarks { // a round, not a marker flush
			scs = append(scs, c.sc)
		}
	}
	ctx, span := w.s.tracer.Start(joined(ctx, scs), "round "+stageNames[st], trace.WithLinks(links(scs)...))
	return ctx, func() {
		w.s.metrics.stages[st].Observe(time.Since(start).Seconds())
		if len(scs) > 0 {
			w.s.metrics.stageRounds[st].Observe(float64(len(scs)))
		}
		span.End()
	}
}

// joined returns ctx under the first valid span context of scs, if any.
func joined(ctx context.Context, scs []trace.SpanContext) context.Context {
	for _, sc := range scs {
		if sc.IsValid() {
			return trace.ContextWithSpanContext(ctx, sc)
		}
	}
	return ctx
}

// links links the valid span contexts of scs but the first (the parent,
// see joined), each once, at most 128.
func links(scs []trace.SpanContext) []trace.Link {
	var parent trace.SpanContext
	var out []trace.Link
	seen := map[trace.SpanID]bool{}
	for _, sc := range scs {
		switch {
		case !sc.IsValid():
		case !parent.IsValid():
			parent = sc
			seen[sc.SpanID()] = true
		case !seen[sc.SpanID()] && len(out) < 128:
			seen[sc.SpanID()] = true
			out = append(out, trace.Link{SpanContext: sc})
		}
	}
	return out
}

// settled counts the outcomes of a round's submissions.
func (m *Metrics) settled(o outcome, n int) {
	if n > 0 {
		m.outcomes[o].Add(float64(n))
	}
}

// roundDone records a finished round.
func (m *Metrics) roundDone(size, requeued int, start time.Time) {
	m.rounds.Inc()
	m.roundSize.Observe(float64(size))
	m.roundTime.Observe(time.Since(start).Seconds())
	if requeued > 0 {
		m.requeued.Add(float64(requeued))
	}
}

// roomSettled counts what became of one room's submissions in a round.
func (m *Metrics) roomSettled(rr *roomRound) {
	if len(rr.subs) == 0 {
		return
	}
	if rr.failed != nil {
		m.settled(outcomeFailed, len(rr.subs))
		return
	}
	var n [numOutcomes]int
	for _, o := range rr.d.outcomes {
		switch {
		case o.Code != "":
			n[outcomeRefused]++
		case rr.committed && o.Seq > rr.head.LastSeq:
			n[outcomeStored]++
		default:
			n[outcomeRepeat]++
		}
	}
	for o, k := range n {
		m.settled(outcome(o), k)
	}
	if rr.committed {
		m.appended.Add(float64(rr.d.next.LastSeq - rr.head.LastSeq))
	}
}
