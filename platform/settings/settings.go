// Package settings reads a service's configuration from the environment.
//
// A service declares one Config struct that embeds Base (the variables
// every service reads: its address, its sidecar's ports, the log level
// and what access tokens must say) and adds its own fields with
// `envconfig` tags, then calls Load once in run with the getenv run was
// given and passes the result down. Only main packages depend on this one, plus authn, which builds
// the verifier from Base, and telemetry, which starts from Telemetry. Nothing else reads the environment.
package settings

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/papochat/papo/platform/telemetry/tracelog"
)

// Base holds the variables every service reads. APP_PORT has no default
// because each service listens on its own: set Port before Load, and the
// environment overrides it. The two API tokens have no default: Load
// refuses to start without them.
type Base struct {
	// Host is the address the app listens on: loopback unless set, since
	// only its own sidecar calls it (the gateway's public listener and the
	// ws replicas the gateway proxies to set 0.0.0.0 where they need to).
	Host string `envconfig:"APP_HOST" default:"127.0.0.1"`
	Port string `envconfig:"APP_PORT"`
	// ProbePort, when set, also serves /healthz and /readyz (and nothing
	// else) on every interface, for the kubelet's probes while Host is
	// loopback.
	ProbePort    string     `envconfig:"APP_PROBE_PORT"`
	DaprHTTPPort string     `envconfig:"DAPR_HTTP_PORT" default:"3500"`
	DaprGRPCPort string     `envconfig:"DAPR_GRPC_PORT" default:"50001"`
	LogLevel     slog.Level `envconfig:"LOG_LEVEL" default:"info"`
	// Issuer and Audience are the iss and aud papo access tokens must
	// carry; Leeway tolerates clock skew on exp, nbf and iat.
	Issuer   string        `envconfig:"AUTH_ISSUER" default:"papo"`
	Audience string        `envconfig:"AUTH_AUDIENCE" default:"papo"`
	Leeway   time.Duration `envconfig:"AUTH_LEEWAY" default:"30s"`
	// TrustedIssuers is the JSON list of external OIDC issuers whose
	// tokens are accepted too (docs/auth.md); authn.ParseTrustedIssuers
	// reads it.
	TrustedIssuers string `envconfig:"AUTH_TRUSTED_ISSUERS"`
	// AppAPIToken is the secret the sidecar sends in the dapr-api-token
	// header on every call it makes to the app (daprd reads the same
	// APP_API_TOKEN): the app refuses any other caller
	// (httpapi.RequireAppToken). The gateway also presents it to the ws
	// replicas it proxies WebSockets to.
	AppAPIToken string `envconfig:"APP_API_TOKEN"`
	// DaprAPIToken is the secret the sidecar wants in the dapr-api-token
	// header of every call to its API (daprd reads the same
	// DAPR_API_TOKEN); the SDK client and the invoke client send it.
	DaprAPIToken string `envconfig:"DAPR_API_TOKEN"`
	// Telemetry says where metrics are served and where traces go
	// (package telemetry).
	Telemetry
}

// Telemetry is the observability part of Base: the metrics listener and
// OpenTelemetry tracing, read from the standard OTEL_* variables.
// Tracing is off unless an OTLP endpoint is set (or
// OTEL_TRACES_EXPORTER=otlp); docs/ops.md lists every variable.
type Telemetry struct {
	// MetricsAddr is where /metrics is served, on a listener of its own:
	// never the service's public port. Empty turns it off. The launcher
	// binds it to loopback.
	MetricsAddr string `envconfig:"METRICS_ADDR" default:":9464"`
	// Pprof adds Go's /debug/pprof/ handlers to the metrics listener.
	Pprof bool `envconfig:"METRICS_PPROF"`

	// ServiceName overrides the service.name of spans (the app's name).
	ServiceName string `envconfig:"OTEL_SERVICE_NAME"`
	// TracesExporter is "otlp", "none", or empty: OTLP when an endpoint
	// is set.
	TracesExporter     string `envconfig:"OTEL_TRACES_EXPORTER"`
	OTLPEndpoint       string `envconfig:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	OTLPTracesEndpoint string `envconfig:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	// OTLPProtocol is "http/protobuf" (the default) or "grpc".
	OTLPProtocol       string `envconfig:"OTEL_EXPORTER_OTLP_PROTOCOL" default:"http/protobuf"`
	OTLPTracesProtocol string `envconfig:"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"`
	// Sampler is one of the OpenTelemetry sampler names; SamplerArg is
	// the ratio of the *traceidratio samplers (default 1).
	Sampler    string `envconfig:"OTEL_TRACES_SAMPLER" default:"parentbased_always_on"`
	SamplerArg string `envconfig:"OTEL_TRACES_SAMPLER_ARG"`
	// SDKDisabled turns tracing off whatever else is set.
	SDKDisabled bool `envconfig:"OTEL_SDK_DISABLED"`
}

// TracesOn reports whether spans are exported.
func (t Telemetry) TracesOn() bool {
	if t.SDKDisabled || t.TracesExporter == "none" {
		return false
	}
	return t.TracesExporter == "otlp" || t.OTLPEndpoint != "" || t.OTLPTracesEndpoint != ""
}

// TracesProtocol is the OTLP protocol spans are sent with.
func (t Telemetry) TracesProtocol() string {
	if t.OTLPTracesProtocol != "" {
		return t.OTLPTracesProtocol
	}
	return t.OTLPProtocol
}

// SamplerRatio is OTEL_TRACES_SAMPLER_ARG as a ratio (1 when unset).
func (t Telemetry) SamplerRatio() (float64, error) {
	if t.SamplerArg == "" {
		return 1, nil
	}
	r, err := strconv.ParseFloat(t.SamplerArg, 64)
	if err != nil || r < 0 || r > 1 {
		return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q is not a ratio from 0 to 1", t.SamplerArg)
	}
	return r, nil
}

func (t Telemetry) check() error {
	var errs []error
	if t.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(t.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("METRICS_ADDR %q is not host:port", t.MetricsAddr))
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("METRICS_ADDR %q has no valid port", t.MetricsAddr))
		}
	}
	switch t.TracesExporter {
	case "", "otlp", "none":
	default:
		errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER %q is not otlp or none", t.TracesExporter))
	}
	switch p := t.TracesProtocol(); p {
	case "http/protobuf", "grpc":
	default:
		errs = append(errs, fmt.Errorf("OTLP protocol %q is not http/protobuf or grpc", p))
	}
	switch t.Sampler {
	case "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio":
	default:
		errs = append(errs, fmt.Errorf("OTEL_TRACES_SAMPLER %q is not a known sampler", t.Sampler))
	}
	if _, err := t.SamplerRatio(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MinTokenLength is the shortest APP_API_TOKEN and DAPR_API_TOKEN Load
// accepts: 32 characters, e.g. 16 random bytes in hex (the launcher makes
// 32 random bytes, `openssl rand -hex 32` does the same).
const MinTokenLength = 32

// Validator is a configuration that checks itself; Load calls Validate
// after the environment is read, so a service validates in one place.
type Validator interface {
	Validate() error
}

// Deriver is a configuration with fields made from others (a list
// parsed, a package's own config assembled); Load calls Derive after the
// environment is read and before the checks, and reports its error with
// theirs.
type Deriver interface {
	Derive() error
}

// Embedder is satisfied by Base and by every struct embedding it: a
// service's configuration, whose Settings are the ones every service
// reads.
type Embedder interface{ Settings() Base }

// Settings returns b; through embedding, a service configuration's Base.
func (b Base) Settings() Base { return b }

// embedsBase is satisfied by a pointer to Base and to every struct
// embedding it: the unexported method is promoted but cannot be
// implemented elsewhere.
type embedsBase interface{ base() *Base }

func (b *Base) base() *Base { return b }

// Load fills spec, a pointer to a struct, from the variables getenv
// reads (os.LookupEnv in main, Env(map) in tests), with envconfig's tags:
// a variable that is set wins, then the field's `default` tag,
// then the value the field already holds. It then calls spec's Derive if
// it has one, checks an embedded Base (ports and leeway) and calls spec's
// Validate if it has one. All problems found after reading are reported
// together.
func Load(getenv Getenv, spec any) error {
	if err := fill(getenv, spec); err != nil {
		return err
	}
	var errs []error
	if d, ok := spec.(Deriver); ok {
		errs = append(errs, d.Derive())
	}
	if b, ok := spec.(embedsBase); ok {
		errs = append(errs, b.base().check())
	}
	if v, ok := spec.(Validator); ok {
		errs = append(errs, v.Validate())
	}
	return errors.Join(errs...)
}

func (b Base) check() error {
	var errs []error
	ports := []struct{ key, value string }{
		{"APP_PORT", b.Port}, {"DAPR_HTTP_PORT", b.DaprHTTPPort}, {"DAPR_GRPC_PORT", b.DaprGRPCPort},
	}
	if b.ProbePort != "" {
		ports = append(ports, struct{ key, value string }{"APP_PROBE_PORT", b.ProbePort})
	}
	for _, p := range ports {
		if n, err := strconv.Atoi(p.value); err != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("%s %q is not a port", p.key, p.value))
		}
	}
	if b.Leeway < 0 {
		errs = append(errs, fmt.Errorf("AUTH_LEEWAY %s is negative", b.Leeway))
	}
	errs = append(errs, b.Telemetry.check())
	if b.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(b.MetricsAddr); err == nil && port != "" && port != "0" && (port == b.Port || port == b.ProbePort) {
			errs = append(errs, fmt.Errorf("METRICS_ADDR %q is one of the service's own ports: metrics need a listener of their own", b.MetricsAddr))
		}
	}
	// Without these every internal hop would be open to whoever reaches
	// a port, so a service does not start without them (docs/ops.md).
	for _, tok := range []struct{ key, value string }{
		{"APP_API_TOKEN", b.AppAPIToken}, {"DAPR_API_TOKEN", b.DaprAPIToken},
	} {
		if len(tok.value) < MinTokenLength {
			errs = append(errs, fmt.Errorf("%s must be set to a secret of at least %d characters (docs/ops.md, security model)", tok.key, MinTokenLength))
		}
	}
	return errors.Join(errs...)
}

// Addr is the address the service listens on.
func (b Base) Addr() string { return net.JoinHostPort(b.Host, b.Port) }

// ProbeAddr is the address of the probe listener, or "" when APP_PROBE_PORT
// is unset.
func (b Base) ProbeAddr() string {
	if b.ProbePort == "" {
		return ""
	}
	return net.JoinHostPort("", b.ProbePort)
}

// Logger returns the service's JSON logger at LOG_LEVEL, every record
// naming the app, and the trace_id and span_id of the span in the
// record's context when there is one (tracelog).
func (b Base) Logger(w io.Writer, app string) *slog.Logger {
	return slog.New(tracelog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: b.LogLevel}))).With("app", app)
}
