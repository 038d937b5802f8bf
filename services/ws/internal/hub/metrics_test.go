package hub_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/services/ws/internal/hub"
)

// value returns a counter's or gauge's value, or a histogram's count, of
// the series of name in reg whose labels include labels (0 if none).
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !matches(m, labels) {
				continue
			}
			switch {
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			default:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestTheHubCountsFramesDeliveriesAndRefusals(t *testing.T) {
	s := newStack(t, 2, hub.Config{})
	s.world.room("r1", "alice", "bob")
	a := s.live(0, "alice")
	b := s.live(1, "bob")
	eventually(t, "a connection on each replica", func() bool {
		return value(t, s.regs[0], "papo_ws_connections") == 1 && value(t, s.regs[1], "papo_ws_connections") == 1
	})

	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c1", Text: "hi"})
	expectType(t, a, api.FrameEvent)
	expectType(t, a, api.FrameAck)
	expectType(t, b, api.FrameEvent)
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", Text: "no client id"})
	expectError(t, a, "missing_field", "")

	eventually(t, "the frames counted", func() bool {
		return value(t, s.regs[0], "papo_ws_frames_sent_total", "type", "error") == 1 &&
			value(t, s.regs[1], "papo_ws_delivery_latency_seconds") == 1
	})
	for _, tc := range []struct {
		replica int
		name    string
		labels  []string
		want    float64
	}{
		{0, "papo_ws_connections_opened_total", nil, 1},
		{0, "papo_ws_frames_received_total", []string{"type", "send"}, 2},
		{0, "papo_ws_frames_received_total", []string{"type", "ping"}, 1},
		{0, "papo_ws_frames_sent_total", []string{"type", "hello"}, 1},
		{0, "papo_ws_frames_sent_total", []string{"type", "pong"}, 1},
		{0, "papo_ws_frames_sent_total", []string{"type", "event"}, 1},
		{0, "papo_ws_frames_sent_total", []string{"type", "ack"}, 1},
		{0, "papo_ws_refusals_total", []string{"code", "missing_field"}, 1},
		// One live event written on each replica: one latency each.
		{0, "papo_ws_delivery_latency_seconds", nil, 1},
		{1, "papo_ws_delivery_latency_seconds", nil, 1},
		{0, "papo_ws_fanout_lag_seconds", nil, 1},
		{1, "papo_ws_fanout_lag_seconds", nil, 1},
		{0, "papo_ws_submit_duration_seconds", []string{"result", "ok"}, 1},
		{0, "papo_ws_submit_batch_size", nil, 1},
		{0, "papo_ws_submissions_total", nil, 1},
		{1, "papo_ws_frames_sent_total", []string{"type", "ack"}, 0},
		{0, "papo_ws_queue_bytes", nil, 0},
	} {
		// Polled: a sender's ack can reach its socket before the submit
		// call that carried it has been timed and counted.
		deadline := time.Now().Add(5 * time.Second)
		for got := value(t, s.regs[tc.replica], tc.name, tc.labels...); got != tc.want; got = value(t, s.regs[tc.replica], tc.name, tc.labels...) {
			if time.Now().After(deadline) {
				t.Errorf("replica %d: %s%v = %v, want %v", tc.replica, tc.name, tc.labels, got, tc.want)
				break
			}
			time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
		}
	}

	_ = a.Close()
	eventually(t, "the closed socket counted", func() bool {
		return value(t, s.regs[0], "papo_ws_connections") == 0 && value(t, s.regs[0], "papo_ws_disconnects_total", "code", "1000") == 1
	})
}

func TestASendIsOneTraceFromTheSocketToEveryReplicasDelivery(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	s := newTracedStack(t, 2, hub.Config{}, tp)
	s.world.room("r1", "alice", "bob")
	a := s.live(0, "alice")
	b := s.live(1, "bob")
	send(t, a, api.ClientFrame{Type: api.FrameSend, RoomID: "r1", ClientID: "c1", Text: "hi"})
	expectType(t, a, api.FrameEvent)
	expectType(t, b, api.FrameEvent)

	var sendSpan, submit tracetest.SpanStub
	var deliveries []tracetest.SpanStub
	eventually(t, "the spans of the send", func() bool {
		deliveries = nil
		for _, sp := range exp.GetSpans() {
			switch sp.Name {
			case "ws send":
				sendSpan = sp
			case "ws submit":
				submit = sp
			case "ws deliver":
				deliveries = append(deliveries, sp)
			}
		}
		return sendSpan.Name != "" && submit.Name != "" && len(deliveries) == 2
	})
	traceID := sendSpan.SpanContext.TraceID()
	if submit.SpanContext.TraceID() != traceID || submit.Parent.SpanID() != sendSpan.SpanContext.SpanID() {
		t.Fatalf("the submit call is not the send's child: %+v", submit.Parent)
	}
	replicas := map[string]bool{}
	for _, d := range deliveries {
		if d.SpanContext.TraceID() != traceID || d.Parent.SpanID() != submit.SpanContext.SpanID() {
			t.Errorf("a delivery is not in the send's trace under the call the message service answered: %+v", d.Parent)
		}
		for _, kv := range d.Attributes {
			if kv.Key == "papo.replica" {
				replicas[kv.Value.AsString()] = true
			}
		}
	}
	if !replicas["ws-1"] || !replicas["ws-2"] {
		t.Fatalf("deliveries on %v, want ws-1 and ws-2", replicas)
	}
}
