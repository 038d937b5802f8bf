// Package telemetry is how a papo service is observed: a Prometheus
// registry with the Go runtime and process collectors, served on a
// listener of its own (METRICS_ADDR, never the public port; optionally
// with pprof), OpenTelemetry tracing exported over OTLP when the standard
// OTEL_* variables ask for it (off by default), and the W3C trace-context
// helpers that carry a trace across Dapr service invocation, pub/sub
// payloads and HTTP. Every service's run calls Start once and passes the
// registry and the tracer provider down; nothing here is global.
//
// It may depend on api and the other platform packages; services and
// their packages depend on it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/settings"
)

// Telemetry is one service's metrics registry, metrics listener and
// tracer provider. Close stops the listener and flushes spans.
type Telemetry struct {
	// Registry holds every metric of the service; packages register
	// their collectors on it (it is the prometheus.Registerer they take).
	Registry *prometheus.Registry
	// Traces makes the service's tracers: the SDK's provider when spans
	// are exported, a no-op one otherwise (trace context still passes
	// through: a no-op span carries the context it was started from).
	Traces trace.TracerProvider

	sdk    *sdktrace.TracerProvider
	srv    *httpapi.Server
	stop   context.CancelFunc
	served chan error
	log    *slog.Logger
}

// Start builds the registry (with the Go and process collectors), starts
// the metrics listener when cfg.MetricsAddr is set, and the tracer
// provider. app names the service (service.name, unless
// OTEL_SERVICE_NAME says otherwise).
func Start(cfg settings.Telemetry, app string, log *slog.Logger) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	t := &Telemetry{Registry: reg, Traces: noop.NewTracerProvider(), log: log}
	if cfg.TracesOn() {
		tp, err := newTracerProvider(cfg, app)
		if err != nil {
			return nil, err
		}
		t.sdk, t.Traces = tp, tp
	}
	if cfg.MetricsAddr != "" {
		srv, err := httpapi.Listen(cfg.MetricsAddr, metricsHandler(reg, cfg.Pprof), log)
		if err != nil {
			t.shutdownTraces()
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
		ctx, stop := context.WithCancel(context.Background())
		t.srv, t.stop, t.served = srv, stop, make(chan error, 1)
		go func() { t.served <- srv.Serve(ctx, 2*time.Second) }()
		log.Info("metrics listening", "url", srv.URL()+"/metrics", "pprof", cfg.Pprof, "tracing", cfg.TracesOn())
	}
	return t, nil
}

// MetricsURL is the URL of /metrics, or "" without a listener.
func (t *Telemetry) MetricsURL() string {
	if t.srv == nil {
		return ""
	}
	return t.srv.URL() + "/metrics"
}

// Tracer returns the tracer of one instrumented package.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.Traces.Tracer(name) }

// Close stops the metrics listener and exports the spans still buffered
// (for at most five seconds). It is safe to call more than once.
func (t *Telemetry) Close() {
	if t.stop != nil {
		t.stop()
		if err := <-t.served; err != nil {
			t.log.Warn("metrics listener", "err", err)
		}
		t.stop = nil
	}
	t.shutdownTraces()
}

func (t *Telemetry) shutdownTraces() {
	if t.sdk == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.sdk.Shutdown(ctx); err != nil {
		t.log.Warn("flush spans", "err", err)
	}
	t.sdk = nil
}

// metricsHandler serves /metrics and, with withPprof, Go's profiles.
func metricsHandler(reg *prometheus.Registry, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// newTracerProvider exports spans over OTLP, batched, sampled as
// OTEL_TRACES_SAMPLER says.
func newTracerProvider(cfg settings.Telemetry, app string) (*sdktrace.TracerProvider, error) {
	ctx := context.Background()
	var exp sdktrace.SpanExporter
	var err error
	endpoint, err := tracesEndpoint(cfg)
	if err != nil {
		return nil, err
	}
	switch cfg.TracesProtocol() {
	case "grpc":
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		var opts []otlptracehttp.Option
		if endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	sampler, err := newSampler(cfg)
	if err != nil {
		return nil, err
	}
	name := cfg.ServiceName
	if name == "" {
		name = app
	}
	// OTEL_RESOURCE_ATTRIBUTES is read by the SDK (WithFromEnv).
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithHost(),
		resource.WithAttributes(attribute.String("service.name", name), attribute.String("service.namespace", "papo")))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
	), nil
}

// tracesEndpoint is the URL spans are sent to: the traces endpoint as
// given, or the base endpoint with /v1/traces (for http/protobuf), or ""
// for the exporter's default (localhost).
func tracesEndpoint(cfg settings.Telemetry) (string, error) {
	if cfg.OTLPTracesEndpoint != "" {
		return checkURL(cfg.OTLPTracesEndpoint)
	}
	if cfg.OTLPEndpoint == "" {
		return "", nil
	}
	u, err := checkURL(cfg.OTLPEndpoint)
	if err != nil || cfg.TracesProtocol() == "grpc" {
		return u, err
	}
	return strings.TrimSuffix(u, "/") + "/v1/traces", nil
}

func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OTLP endpoint %q is not an http(s) URL", s)
	}
	return s, nil
}

func newSampler(cfg settings.Telemetry) (sdktrace.Sampler, error) {
	ratio, err := cfg.SamplerRatio()
	if err != nil {
		return nil, err
	}
	switch cfg.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	}
}
