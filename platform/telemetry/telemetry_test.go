package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/platform/telemetry"
	"github.com/papochat/papo/platform/telemetry/otlptest"
)

// defaults reads the telemetry part of settings.Base alone, as Load
// fills it from the environment (defaults included).
func defaults(t *testing.T) settings.Telemetry {
	t.Helper()
	var tel settings.Telemetry
	if err := settings.Load(settings.Env(nil), &tel); err != nil {
		t.Fatal(err)
	}
	return tel
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTheMetricsListenerServesRuntimeMetricsAndPprofOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pprof     bool
		wantPprof int
	}{
		{"without pprof", false, http.StatusNotFound},
		{"with pprof", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaults(t)
			cfg.MetricsAddr, cfg.Pprof = "127.0.0.1:0", tc.pprof
			tel, err := telemetry.Start(cfg, "test", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Close()
			code, body := get(t, tel.MetricsURL())
			if code != http.StatusOK {
				t.Fatalf("/metrics: %d", code)
			}
			for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
				if !strings.Contains(body, "\n"+name+" ") {
					t.Errorf("/metrics lacks %s", name)
				}
			}
			base := strings.TrimSuffix(tel.MetricsURL(), "/metrics")
			if code, _ := get(t, base+"/debug/pprof/"); code != tc.wantPprof {
				t.Fatalf("/debug/pprof/: %d, want %d", code, tc.wantPprof)
			}
		})
	}
}

func TestNoMetricsListenerWithoutAnAddress(t *testing.T) {
	cfg := defaults(t)
	cfg.MetricsAddr = ""
	tel, err := telemetry.Start(cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	if got := tel.MetricsURL(); got != "" {
		t.Fatalf("MetricsURL = %q, want none", got)
	}
}

func TestTracingIsOffByDefault(t *testing.T) {
	cfg := defaults(t)
	cfg.MetricsAddr = ""
	tel, err := telemetry.Start(cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	if _, ok := tel.Traces.(noop.TracerProvider); !ok {
		t.Fatalf("tracer provider %T, want the no-op one", tel.Traces)
	}
}

func TestSpansReachTheOTLPEndpoint(t *testing.T) {
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	cfg := defaults(t)
	cfg.MetricsAddr, cfg.OTLPEndpoint = "", rcv.URL()
	tel, err := telemetry.Start(cfg, "unit", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tel.Tracer("t").Start(context.Background(), "parent")
	_, child := tel.Tracer("t").Start(ctx, "child")
	child.End()
	parent.End()
	tel.Close() // flushes
	spans := rcv.Trace(parent.SpanContext().TraceID().String())
	if len(spans) != 2 {
		t.Fatalf("got %d spans of the trace, want 2: %+v", len(spans), rcv.Spans())
	}
	for _, s := range spans {
		if s.Service != "unit" {
			t.Errorf("span %s: service %q, want unit", s.Name, s.Service)
		}
		if s.Name == "child" && s.ParentID != parent.SpanContext().SpanID().String() {
			t.Errorf("child's parent %s, want %s", s.ParentID, parent.SpanContext().SpanID())
		}
	}
}

func TestTheSamplerRatioIsHonoured(t *testing.T) {
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	cfg := defaults(t)
	cfg.MetricsAddr, cfg.OTLPEndpoint, cfg.Sampler, cfg.SamplerArg = "", rcv.URL(), "traceidratio", "0"
	tel, err := telemetry.Start(cfg, "unit", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, s := tel.Tracer("t").Start(context.Background(), "dropped")
		s.End()
	}
	tel.Close()
	if n := len(rcv.Spans()); n != 0 {
		t.Fatalf("ratio 0 exported %d spans", n)
	}
}

func TestTraceParentRoundTrips(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled,
	})
	tp := telemetry.FormatTraceParent(sc)
	if want := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"; tp != want {
		t.Fatalf("traceparent %q, want %q", tp, want)
	}
	got := trace.SpanContextFromContext(telemetry.WithTraceParent(context.Background(), tp))
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() || !got.IsRemote() {
		t.Fatalf("parsed %+v, want %+v (remote)", got, sc)
	}
	for _, bad := range []string{"", "00-0102", "zz-0102030405060708090a0b0c0d0e0f10-0102030405060708-01",
		"00-00000000000000000000000000000000-0102030405060708-01", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-0x"} {
		if sc := telemetry.ParseTraceParent(bad); sc.IsValid() {
			t.Errorf("%q parsed as valid", bad)
		}
	}
	if telemetry.TraceParent(context.Background()) != "" {
		t.Fatal("a context without a span has a traceparent")
	}
}

func TestHTTPContinuesTheCallersTrace(t *testing.T) {
	const caller = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	for _, tc := range []struct {
		name    string
		tracing bool
	}{{"tracing off", false}, {"tracing on", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var tp trace.TracerProvider = noop.NewTracerProvider()
			var rcv *otlptest.Receiver
			var tel *telemetry.Telemetry
			if tc.tracing {
				var err error
				if rcv, err = otlptest.Start(); err != nil {
					t.Fatal(err)
				}
				defer rcv.Close()
				cfg := defaults(t)
				cfg.MetricsAddr, cfg.OTLPEndpoint = "", rcv.URL()
				if tel, err = telemetry.Start(cfg, "unit", slog.New(slog.DiscardHandler)); err != nil {
					t.Fatal(err)
				}
				tp = tel.Traces
			}
			var seen string
			mux := http.NewServeMux()
			mux.HandleFunc("GET /rooms/{id}", func(w http.ResponseWriter, r *http.Request) {
				seen = telemetry.TraceParent(r.Context())
			})
			srv := httptest.NewServer(telemetry.HTTP(tp, nil)(mux))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/rooms/r1", nil)
			req.Header.Set("traceparent", caller)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !strings.HasPrefix(seen, "00-0102030405060708090a0b0c0d0e0f10-") {
				t.Fatalf("the handler's context is %q, not in the caller's trace", seen)
			}
			if !tc.tracing {
				return
			}
			tel.Close()
			deadline := time.Now().Add(5 * time.Second)
			for len(rcv.Spans()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			spans := rcv.Spans()
			if len(spans) != 1 || spans[0].Name != "GET /rooms/{id}" || spans[0].ParentID != "0102030405060708" {
				t.Fatalf("spans %+v, want one GET /rooms/{id} child of the caller", spans)
			}
		})
	}
}
