package room_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/telemetry"
	"github.com/papochat/papo/services/message/internal/room"
)

// sample returns the value of a counter or the count of a histogram in
// reg whose labels include want.
func sample(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v in the registry", name, want)
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestRoundsAreCountedByOutcome(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.svc.SetTelemetry(room.NewMetrics(reg), nil)
	r := f.roomWith(t, "alice")

	consume(t, f.svc, msg(r.ID, "alice", "c1", "one"))
	// A repeat, a new message and a refusal in one round.
	consume(t, f.svc, msg(r.ID, "alice", "c1", "one"), msg(r.ID, "alice", "c2", "two"), msg("r_nope", "alice", "c3", "lost"))

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"papo_message_rounds_total", nil, 2},
		{"papo_message_round_submissions", nil, 2},
		{"papo_message_appended_events_total", nil, 2},
		{"papo_message_submissions_total", map[string]string{"outcome": "stored"}, 2},
		{"papo_message_submissions_total", map[string]string{"outcome": "repeat"}, 1},
		{"papo_message_submissions_total", map[string]string{"outcome": "refused"}, 1},
		{"papo_message_submissions_total", map[string]string{"outcome": "failed"}, 0},
		{"papo_message_dead_letters_total", nil, 1},
		{"papo_message_append_duration_seconds", nil, 2},
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "read"}, 2},
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "commit"}, 2},
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "publish"}, 2},
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "materialize"}, 2},
		{"papo_message_head_conflicts_total", nil, 0},
	} {
		if got := sample(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestARoundContinuesItsCallersTraceIntoTheAnnouncement(t *testing.T) {
	f := newFixture(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	f.svc.SetTelemetry(nil, tp.Tracer("test"))
	r := f.roomWith(t, "alice")
	before := len(batches(t, f.pub))

	callerCtx, caller := tp.Tracer("test").Start(context.Background(), "caller")
	if _, err := f.svc.Append(callerCtx, []events.Submission{msg(r.ID, "alice", "c1", "traced")}); err != nil {
		t.Fatal(err)
	}
	caller.End()

	bs := batches(t, f.pub)[before:]
	if len(bs) != 1 {
		t.Fatalf("got %d batches, want 1", len(bs))
	}
	announced := telemetry.ParseTraceParent(bs[0].TraceParent)
	if announced.TraceID() != caller.SpanContext().TraceID() {
		t.Fatalf("the batch's traceparent %q is not in the caller's trace %s", bs[0].TraceParent, caller.SpanContext().TraceID())
	}
	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	round, ok := byName["message round"]
	if !ok || round.Parent.SpanID() != caller.SpanContext().SpanID() {
		t.Fatalf("no round span under the caller: %v", names(exp.GetSpans()))
	}
	for _, stage := range []string{"round read", "round decide", "round commit", "round publish", "round materialize"} {
		if s, ok := byName[stage]; !ok || s.Parent.SpanID() != round.SpanContext.SpanID() {
			t.Errorf("no %q span under the round: %v", stage, names(exp.GetSpans()))
		}
	}
	if pub := byName["round publish"]; announced.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("the batch names span %s, want the publish stage %s", announced.SpanID(), pub.SpanContext.SpanID())
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
