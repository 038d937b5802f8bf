package telemetry

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// HTTP returns a middleware that continues the caller's trace (its
// traceparent header) in a server span per request, named by the route
// (route, called after the handler, may read the router's pattern; nil
// uses the ServeMux pattern). With tracing off and no traceparent it
// only passes the request on; with tracing off and a traceparent it keeps
// the caller's context, so the calls the handler makes carry it on.
func HTTP(tp trace.TracerProvider, route func(*http.Request) string) func(http.Handler) http.Handler {
	_, off := tp.(noop.TracerProvider)
	tracer := tp.Tracer("papo/http")
	if route == nil {
		route = func(r *http.Request) string { return r.Pattern }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if off {
				if r.Header.Get(TraceParentHeader) != "" {
					r = r.WithContext(Extract(r.Context(), r.Header))
				}
				next.ServeHTTP(w, r)
				return
			}
			ctx, span := tracer.Start(Extract(r.Context(), r.Header), r.Method,
				trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method)))
			defer span.End()
			rec := &StatusRecorder{ResponseWriter: w}
			r = r.WithContext(ctx)
			next.ServeHTTP(rec, r)
			if p := route(r); p != "" {
				// A ServeMux pattern may start with its method.
				if i := strings.IndexByte(p, ' '); i >= 0 {
					p = p[i+1:]
				}
				span.SetName(r.Method + " " + p)
				span.SetAttributes(attribute.String("http.route", p))
			}
			status := rec.Status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}

// StatusRecorder remembers the status of a response for a middleware
// that counts or traces it: Status is the first status written (200 when
// the body is written first), 0 while nothing is. Unwrap keeps the
// underlying writer's optional interfaces (Flush, Hijack) reachable
// through http.ResponseController.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap returns the writer recorded.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
