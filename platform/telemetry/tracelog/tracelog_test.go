package tracelog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/telemetry/tracelog"
)

func TestRecordsCarryTheIDsOfTheSpanInTheirContext(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		SpanID:     trace.SpanID{0x0b, 1, 2, 3, 4, 5, 6, 7},
		TraceFlags: trace.FlagsSampled,
	})
	for _, tc := range []struct {
		name          string
		ctx           context.Context
		trace, span   string
		wantGroupAttr bool
	}{
		{"with a span", trace.ContextWithSpanContext(context.Background(), sc), sc.TraceID().String(), sc.SpanID().String(), true},
		{"without one", context.Background(), "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(tracelog.New(slog.NewJSONHandler(&buf, nil))).With("app", "test")
			log.InfoContext(tc.ctx, "hello", "n", 1)
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, buf.Bytes())
			}
			gotTrace, _ := got["trace_id"].(string)
			gotSpan, _ := got["span_id"].(string)
			if gotTrace != tc.trace || gotSpan != tc.span {
				t.Fatalf("trace_id, span_id = %q, %q, want %q, %q (line %s)", gotTrace, gotSpan, tc.trace, tc.span, buf.Bytes())
			}
			if got["app"] != "test" || got["n"] != 1.0 {
				t.Fatalf("the other attributes were lost: %s", buf.Bytes())
			}
		})
	}
}
