package telemetry

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceParentHeader is the W3C trace-context header (and gRPC metadata
// key, and the field papo's pub/sub payloads carry it in).
const TraceParentHeader = "traceparent"

// Inject writes the span context of ctx into h as traceparent (and
// tracestate); nothing when ctx holds none.
func Inject(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx carrying the caller's span context from h, if h has
// a valid traceparent.
func Extract(ctx context.Context, h http.Header) context.Context {
	if h.Get(TraceParentHeader) == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
}

// TraceParent formats the span context of ctx as a W3C traceparent, or ""
// when ctx holds none. Pub/sub payloads carry it (events.RoomEventBatch,
// events.Submission) so a trace survives batching and the SDK's
// streaming subscriptions, which drop the CloudEvent's own.
func TraceParent(ctx context.Context) string {
	return FormatTraceParent(trace.SpanContextFromContext(ctx))
}

// FormatTraceParent formats sc as a W3C traceparent, or "" when invalid.
func FormatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b strings.Builder
	b.Grow(55)
	b.WriteString("00-")
	b.WriteString(sc.TraceID().String())
	b.WriteByte('-')
	b.WriteString(sc.SpanID().String())
	if sc.IsSampled() {
		b.WriteString("-01")
	} else {
		b.WriteString("-00")
	}
	return b.String()
}

// ParseTraceParent returns the remote span context of a W3C traceparent;
// an invalid one when tp is not one.
func ParseTraceParent(tp string) trace.SpanContext {
	// version "00": 2 + 1 + 32 + 1 + 16 + 1 + 2 characters.
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] != "00" {
		return trace.SpanContext{}
	}
	tid, err := trace.TraceIDFromHex(tp[3:35])
	if err != nil {
		return trace.SpanContext{}
	}
	sid, err := trace.SpanIDFromHex(tp[36:52])
	if err != nil {
		return trace.SpanContext{}
	}
	var flags trace.TraceFlags
	switch tp[53:] {
	case "01":
		flags = trace.FlagsSampled
	case "00":
	default:
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
}

// WithTraceParent returns ctx carrying the remote span context tp; ctx
// unchanged when tp is empty or malformed.
func WithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	sc := ParseTraceParent(tp)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}
