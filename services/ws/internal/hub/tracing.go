package hub

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/telemetry"
)

// A send's trace: "ws send" starts when the frame is accepted (a root: a
// WebSocket frame carries no trace context) and ends when the message
// service answered for it; "ws submit" is the call that handed it over
// (the child of its first send, linked to the others), and carries the
// trace to the message service; "ws deliver" is this replica's delivery of
// a room.events batch, the child of the message service's round. Spans
// are made only when tracing is on: a send then costs nothing more.

// startSend starts a send's span; nil when tracing is off.
func (h *Hub) startSend(sub events.Submission) trace.Span {
	if !h.tracing {
		return nil
	}
	_, span := h.tracer.Start(context.Background(), "ws send", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("papo.room_id", sub.RoomID), attribute.String("papo.client_id", sub.ClientID),
			attribute.String("papo.type", sub.Type)))
	return span
}

// startSubmit starts the span of a call handing batch over.
func (h *Hub) startSubmit(batch []outgoing) (context.Context, trace.Span) {
	ctx := context.Background()
	if !h.tracing {
		return ctx, nil
	}
	var links []trace.Link
	for _, o := range batch {
		if o.span == nil {
			continue
		}
		if !trace.SpanContextFromContext(ctx).IsValid() {
			ctx = trace.ContextWithSpan(ctx, o.span)
		} else if len(links) < 128 {
			links = append(links, trace.Link{SpanContext: o.span.SpanContext()})
		}
	}
	return h.tracer.Start(ctx, "ws submit", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("papo.submissions", len(batch))))
}

// endSubmit records a call's time and ends its span and its sends' spans
// with each one's outcome.
func (h *Hub) endSubmit(span trace.Span, batch []outgoing, start time.Time, res events.SubmitResult, err error) {
	i := 0
	if err != nil {
		i = 1
	}
	h.metrics.submit[i].Observe(time.Since(start).Seconds())
	h.metrics.batchSize.Observe(float64(len(batch)))
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	for j, o := range batch {
		if o.span == nil {
			continue
		}
		if err == nil && j < len(res.Outcomes) {
			if out := res.Outcomes[j]; out.Code != "" {
				o.span.SetAttributes(attribute.String("papo.refused", out.Code))
			} else {
				o.span.SetAttributes(attribute.Int64("papo.seq", out.Seq))
			}
		}
		o.span.End()
	}
}

// startDeliver starts this replica's delivery span of a batch, the child
// of the round that stored it.
func (h *Hub) startDeliver(b events.RoomEventBatch) trace.Span {
	if !h.tracing || b.TraceParent == "" {
		return nil
	}
	_, span := h.tracer.Start(telemetry.WithTraceParent(context.Background(), b.TraceParent), "ws deliver",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("papo.events", len(b.Events)), attribute.String("papo.replica", h.cfg.Replica)))
	return span
}
