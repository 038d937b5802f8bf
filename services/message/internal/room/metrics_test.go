package room_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/platform/telemetry"
	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

// sample returns the value of a counter or the count of a histogram in
// reg whose labels include want.
func sample(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	m := metric(t, reg, name, want)
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

// metric returns the series of name in reg whose labels include want.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) *dto.Metric {
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
			return m
		}
	}
	t.Fatalf("no %s%v in the registry", name, want)
	return nil
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
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "decide"}, 2},
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "commit"}, 2},
		// Consume waits for its announcement: each round is announced by a
		// call of its own.
		{"papo_message_round_stage_duration_seconds", map[string]string{"stage": "announce"}, 2},
		{"papo_message_stage_rounds", map[string]string{"stage": "announce"}, 2},
		{"papo_message_head_conflicts_total", nil, 0},
	} {
		if got := sample(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The materializer may also run for read markers alone (markers.go);
	// every committed round is materialized by some call, once.
	if got := metric(t, reg, "papo_message_stage_rounds", map[string]string{"stage": "materialize"}).GetHistogram().GetSampleSum(); got != 2 {
		t.Errorf("the materializer took %v rounds, want 2", got)
	}
	if got := sample(t, reg, "papo_message_round_stage_duration_seconds", map[string]string{"stage": "materialize"}); got < 1 {
		t.Errorf("the materialize stage was timed %v times, want at least once", got)
	}
	// Each materialization that writes events is counted once, by how
	// they went: riding on a round's head transaction or alone. The two
	// rounds' events take one or two of them (the materializer may take
	// both rounds in one call).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.svc.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	rode := sample(t, reg, "papo_message_materializations_total", map[string]string{"how": "rode"})
	alone := sample(t, reg, "papo_message_materializations_total", map[string]string{"how": "alone"})
	if n := rode + alone; n < 1 || n > 2 {
		t.Errorf("materializations counted: rode %v, alone %v; want one or two in all", rode, alone)
	}
}

// heldPublisher holds room.events publishes, once held, until released:
// rounds that commit meanwhile wait for the announcer together.
type heldPublisher struct {
	*publish.Memory
	mu      sync.Mutex
	held    chan struct{}
	waiting chan struct{} // a publish is held
}

func (p *heldPublisher) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held, p.waiting = make(chan struct{}), make(chan struct{}, 1)
}

func (p *heldPublisher) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.held)
	p.held = nil
}

func (p *heldPublisher) Publish(ctx context.Context, topic string, payload any) error {
	p.mu.Lock()
	held, waiting := p.held, p.waiting
	p.mu.Unlock()
	if held != nil && topic == events.TopicRoomEvents {
		select {
		case waiting <- struct{}{}:
		default:
		}
		<-held
	}
	return p.Memory.Publish(ctx, topic, payload)
}

// threeRoundsTwoAnnouncements appends in three rounds while the first
// one's announcement is held, so the second call of the announcer takes
// the second and third rounds at once. ctxs are the callers' contexts.
func threeRoundsTwoAnnouncements(t *testing.T, svc *room.Service, pub *heldPublisher, roomID string, ctxs [3]context.Context) {
	t.Helper()
	pub.hold()
	for i, c := range ctxs {
		if _, err := svc.Append(c, []events.Submission{msg(roomID, "alice", fmt.Sprint("c", i), "hi")}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-pub.waiting // the first round's announcement is on its way
		}
	}
	pub.release()
	quiesce(t, svc)
}

func TestTheAnnouncerAndMaterializerCountTheRoundsEachCallTook(t *testing.T) {
	store, pub := memstore.New(), &heldPublisher{Memory: &publish.Memory{}}
	svc := room.New(store, pub, quiet())
	reg := prometheus.NewRegistry()
	svc.SetTelemetry(room.NewMetrics(reg), nil)
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	quiesce(t, svc)

	threeRoundsTwoAnnouncements(t, svc, pub, r.ID, [3]context.Context{ctx, ctx, ctx})

	if got := sample(t, reg, "papo_message_rounds_total", nil); got != 3 {
		t.Fatalf("%v rounds, want 3", got)
	}
	h := metric(t, reg, "papo_message_stage_rounds", map[string]string{"stage": "announce"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 3 {
		t.Errorf("announcer: %d calls took %v rounds, want 2 calls taking 3 (1, then 2)", h.GetSampleCount(), h.GetSampleSum())
	}
	if got := sample(t, reg, "papo_message_round_stage_duration_seconds", map[string]string{"stage": "announce"}); got != 2 {
		t.Errorf("announce timed %v times, want once per call (2)", got)
	}
	// Every committed round is materialized by some call, once.
	if got := metric(t, reg, "papo_message_stage_rounds", map[string]string{"stage": "materialize"}).GetHistogram().GetSampleSum(); got != 3 {
		t.Errorf("the materializer took %v rounds, want 3", got)
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
	// The announcer and the materializer run after Append returns.
	quiesce(t, f.svc)

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
	for _, stage := range []string{"round read", "round decide", "round commit", "round announce", "round materialize"} {
		if s, ok := byName[stage]; !ok || s.Parent.SpanID() != round.SpanContext.SpanID() {
			t.Errorf("no %q span under the round: %v", stage, names(exp.GetSpans()))
		}
	}
	if pub := byName["round announce"]; announced.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("the batch names span %s, want the announce stage %s", announced.SpanID(), pub.SpanContext.SpanID())
	}
}

func TestAnAnnouncementOfSeveralRoundsContinuesTheFirstAndLinksTheOthers(t *testing.T) {
	store, pub := memstore.New(), &heldPublisher{Memory: &publish.Memory{}}
	svc := room.New(store, pub, quiet())
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	svc.SetTelemetry(nil, tp.Tracer("test"))
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	quiesce(t, svc)
	before := len(batches(t, pub.Memory))

	var ctxs [3]context.Context
	var callers [3]trace.SpanContext
	for i := range ctxs {
		c, span := tp.Tracer("test").Start(ctx, fmt.Sprint("caller ", i))
		ctxs[i], callers[i] = c, span.SpanContext()
		defer span.End()
	}
	threeRoundsTwoAnnouncements(t, svc, pub, r.ID, ctxs)

	// The round of each caller, by the caller's span.
	roundOf := map[trace.SpanID]trace.SpanContext{}
	var announces []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "message round":
			roundOf[s.Parent.SpanID()] = s.SpanContext
		case "round announce":
			announces = append(announces, s)
		}
	}
	r0, r1, r2 := roundOf[callers[0].SpanID()], roundOf[callers[1].SpanID()], roundOf[callers[2].SpanID()]
	if !r0.IsValid() || !r1.IsValid() || !r2.IsValid() {
		t.Fatalf("rounds %v, want one under each caller: %v", roundOf, names(exp.GetSpans()))
	}
	if len(announces) != 2 {
		t.Fatalf("%d announcements, want 2: %v", len(announces), names(exp.GetSpans()))
	}
	first, second := announces[0], announces[1]
	if first.Parent.SpanID() != r0.SpanID() {
		first, second = second, first
	}
	if first.Parent.SpanID() != r0.SpanID() || len(first.Links) != 0 {
		t.Errorf("the first announcement: parent %s, links %d; want round 0 (%s), none", first.Parent.SpanID(), len(first.Links), r0.SpanID())
	}
	// The second took rounds 1 and 2: it continues round 1's trace and
	// links round 2's.
	if second.Parent.SpanID() != r1.SpanID() || second.SpanContext.TraceID() != callers[1].TraceID() {
		t.Errorf("the second announcement's parent %s, want round 1 (%s)", second.Parent.SpanID(), r1.SpanID())
	}
	if len(second.Links) != 1 || second.Links[0].SpanContext.SpanID() != r2.SpanID() {
		t.Errorf("the second announcement links %v, want round 2 (%s) alone", second.Links, r2.SpanID())
	}
	// Each batch names its announcement's span.
	want := map[trace.SpanID]bool{first.SpanContext.SpanID(): true, second.SpanContext.SpanID(): true}
	bs := batches(t, pub.Memory)[before:]
	if len(bs) != 2 {
		t.Fatalf("%d batches published, want 2", len(bs))
	}
	for _, b := range bs {
		if sc := telemetry.ParseTraceParent(b.TraceParent); !want[sc.SpanID()] {
			t.Errorf("a batch names span %q, no announcement", b.TraceParent)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestARoundIntervalGathersWhatArrivesMeanwhile: with a round interval,
// the sends that arrive while the writer waits after a round go in one
// round; the first after a quiet spell is not held.
func TestARoundIntervalGathersWhatArrivesMeanwhile(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.svc.SetTelemetry(room.NewMetrics(reg), nil)
	f.svc.SetRoundInterval(300 * time.Millisecond)
	rooms := make([]api.Room, 6)
	for i := range rooms {
		rooms[i] = f.roomWith(t, "alice")
	}
	start := time.Now()
	consume(t, f.svc, msg(rooms[0].ID, "alice", "first", "x"))
	if held := time.Since(start); held > 200*time.Millisecond {
		t.Fatalf("the first send after a quiet spell waited %v", held)
	}
	var wg sync.WaitGroup
	for i, r := range rooms[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.svc.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{msg(r.ID, "alice", fmt.Sprint("m", i), "x")}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := sample(t, reg, "papo_message_rounds_total", nil); got != 2 {
		t.Fatalf("%v rounds for a send and then five sends within the interval, want 2", got)
	}
}
