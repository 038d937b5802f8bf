package settings_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/papochat/papo/platform/settings"
)

// spec is a service configuration as services write them.
type spec struct {
	settings.Base
	Window time.Duration `envconfig:"TEST_WINDOW" default:"1m"`
	Name   string        `envconfig:"TEST_NAME"`
}

func (s spec) Validate() error {
	if s.Window > time.Hour {
		return errors.New("TEST_WINDOW must be at most 1h")
	}
	return nil
}

// Tokens of the minimum length, as every service needs them.
var (
	appToken  = strings.Repeat("a", settings.MinTokenLength)
	daprToken = strings.Repeat("d", settings.MinTokenLength)
)

// withTokens returns vars plus the two API tokens Load requires (unless
// vars sets them), as a Getenv.
func withTokens(vars map[string]string) settings.Getenv {
	env := map[string]string{"APP_API_TOKEN": appToken, "DAPR_API_TOKEN": daprToken}
	for k, v := range vars {
		env[k] = v
	}
	return settings.Env(env)
}

func TestLoadTakesDefaultsAndThePresetPort(t *testing.T) {
	t.Parallel()
	s := spec{Base: settings.Base{Port: "8083"}, Name: "preset"}
	if err := settings.Load(withTokens(nil), &s); err != nil {
		t.Fatal(err)
	}
	want := settings.Base{Host: "127.0.0.1", Port: "8083", DaprHTTPPort: "3500", DaprGRPCPort: "50001",
		LogLevel: slog.LevelInfo, Issuer: "papo", Audience: "papo", Leeway: 30 * time.Second,
		AppAPIToken: appToken, DaprAPIToken: daprToken,
		Telemetry: settings.Telemetry{MetricsAddr: ":9464", OTLPProtocol: "http/protobuf", Sampler: "parentbased_always_on"}}
	if s.Base != want {
		t.Fatalf("got %+v, want %+v", s.Base, want)
	}
	if s.Window != time.Minute || s.Name != "preset" {
		t.Fatalf("service fields: got %v %q, want 1m0s preset", s.Window, s.Name)
	}
	if got := s.Addr(); got != "127.0.0.1:8083" {
		t.Fatalf("Addr() = %q", got)
	}
}

func TestLoadReadsTheEnvironment(t *testing.T) {
	t.Parallel()
	env := withTokens(map[string]string{
		"APP_HOST": "0.0.0.0", "APP_PORT": "0", "DAPR_HTTP_PORT": "3601", "DAPR_GRPC_PORT": "50002",
		"LOG_LEVEL": "debug", "AUTH_ISSUER": "iss", "AUTH_AUDIENCE": "aud", "AUTH_LEEWAY": "5s",
		"AUTH_TRUSTED_ISSUERS": `[]`, "TEST_WINDOW": "2s", "TEST_NAME": "env",
		"METRICS_ADDR": "127.0.0.1:9000", "METRICS_PPROF": "true", "OTEL_SERVICE_NAME": "svc",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG": "0.25",
	})
	s := spec{Base: settings.Base{Port: "8083"}, Name: "preset"}
	if err := settings.Load(env, &s); err != nil {
		t.Fatal(err)
	}
	want := settings.Base{Host: "0.0.0.0", Port: "0", DaprHTTPPort: "3601", DaprGRPCPort: "50002",
		LogLevel: slog.LevelDebug, Issuer: "iss", Audience: "aud", Leeway: 5 * time.Second, TrustedIssuers: "[]",
		AppAPIToken: appToken, DaprAPIToken: daprToken,
		Telemetry: settings.Telemetry{MetricsAddr: "127.0.0.1:9000", Pprof: true, ServiceName: "svc",
			OTLPEndpoint: "http://127.0.0.1:4318", OTLPProtocol: "http/protobuf",
			Sampler: "parentbased_traceidratio", SamplerArg: "0.25"}}
	if s.Base != want {
		t.Fatalf("got %+v, want %+v", s.Base, want)
	}
	if s.Window != 2*time.Second || s.Name != "env" {
		t.Fatalf("service fields: got %v %q", s.Window, s.Name)
	}
}

func TestLoadRefusesBadValuesNamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		want             []string // all must appear in the error
	}{
		{"port not a number", "APP_PORT", "http", []string{`APP_PORT "http" is not a port`}},
		{"port out of range", "DAPR_GRPC_PORT", "70000", []string{`DAPR_GRPC_PORT "70000" is not a port`}},
		{"port negative", "DAPR_HTTP_PORT", "-1", []string{`DAPR_HTTP_PORT "-1" is not a port`}},
		{"port empty", "DAPR_HTTP_PORT", "", []string{`DAPR_HTTP_PORT "" is not a port`}},
		{"log level", "LOG_LEVEL", "loud", []string{"LOG_LEVEL", "loud"}},
		{"leeway not a duration", "AUTH_LEEWAY", "soon", []string{"AUTH_LEEWAY", "soon"}},
		{"flag not a bool", "METRICS_PPROF", "maybe", []string{"METRICS_PPROF", "maybe"}},
		{"leeway negative", "AUTH_LEEWAY", "-1s", []string{"AUTH_LEEWAY -1s is negative"}},
		{"service field", "TEST_WINDOW", "2h", []string{"TEST_WINDOW must be at most 1h"}},
		{"metrics address without a port", "METRICS_ADDR", "127.0.0.1", []string{`METRICS_ADDR "127.0.0.1" is not host:port`}},
		{"metrics port out of range", "METRICS_ADDR", ":99999", []string{`METRICS_ADDR ":99999" has no valid port`}},
		{"metrics on the service's port", "METRICS_ADDR", "127.0.0.1:8083", []string{"the service's own ports"}},
		{"unknown exporter", "OTEL_TRACES_EXPORTER", "jaeger", []string{"OTEL_TRACES_EXPORTER", "jaeger"}},
		{"unknown protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", []string{"http/json"}},
		{"unknown sampler", "OTEL_TRACES_SAMPLER", "sometimes", []string{"OTEL_TRACES_SAMPLER", "sometimes"}},
		{"ratio above 1", "OTEL_TRACES_SAMPLER_ARG", "1.5", []string{"OTEL_TRACES_SAMPLER_ARG", "1.5"}},
		{"app token missing", "APP_API_TOKEN", "", []string{"APP_API_TOKEN must be set"}},
		{"app token short", "APP_API_TOKEN", "secret", []string{"APP_API_TOKEN must be set", "at least 32"}},
		{"dapr token missing", "DAPR_API_TOKEN", "", []string{"DAPR_API_TOKEN must be set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := spec{Base: settings.Base{Port: "8083"}}
			err := settings.Load(withTokens(map[string]string{tc.key: tc.value}), &s)
			if err == nil {
				t.Fatalf("%s=%q accepted", tc.key, tc.value)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLoadRefusesMetricsOnTheProbePort(t *testing.T) {
	t.Parallel()
	err := settings.Load(withTokens(map[string]string{"APP_PROBE_PORT": "9090", "METRICS_ADDR": ":9090"}), &spec{Base: settings.Base{Port: "8083"}})
	if err == nil || !strings.Contains(err.Error(), "the service's own ports") {
		t.Fatalf("got %v, want METRICS_ADDR on APP_PROBE_PORT refused", err)
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	err := settings.Load(withTokens(map[string]string{"APP_PORT": "x", "TEST_WINDOW": "2h"}), &spec{})
	if err == nil || !strings.Contains(err.Error(), "APP_PORT") || !strings.Contains(err.Error(), "TEST_WINDOW") {
		t.Fatalf("got %v, want both APP_PORT and TEST_WINDOW named", err)
	}
}

func TestLoadRequiresAPort(t *testing.T) {
	t.Parallel()
	if err := settings.Load(withTokens(nil), &spec{}); err == nil || !strings.Contains(err.Error(), "APP_PORT") {
		t.Fatalf("got %v, want APP_PORT refused when neither set nor preset", err)
	}
}

func TestLoggerWritesJSONAtTheLevelNamingTheApp(t *testing.T) {
	var buf bytes.Buffer
	log := settings.Base{LogLevel: slog.LevelWarn}.Logger(&buf, "message")
	log.Info("dropped")
	log.Warn("kept", "k", 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want only the warning: %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "kept" || rec["app"] != "message" || rec["level"] != "WARN" {
		t.Fatalf("got %v", rec)
	}
}

func TestTracesAreOnOnlyWhenAnExporterIsAskedFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    settings.Telemetry
		want bool
	}{
		{"nothing set", settings.Telemetry{}, false},
		{"an endpoint", settings.Telemetry{OTLPEndpoint: "http://c:4318"}, true},
		{"a traces endpoint", settings.Telemetry{OTLPTracesEndpoint: "http://c:4318/v1/traces"}, true},
		{"otlp without an endpoint (localhost)", settings.Telemetry{TracesExporter: "otlp"}, true},
		{"an endpoint but exporter none", settings.Telemetry{OTLPEndpoint: "http://c:4318", TracesExporter: "none"}, false},
		{"an endpoint but the SDK disabled", settings.Telemetry{OTLPEndpoint: "http://c:4318", SDKDisabled: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.TracesOn(); got != tc.want {
				t.Fatalf("TracesOn() = %v, want %v", got, tc.want)
			}
		})
	}
}

// every is a configuration with every kind of field papo's services use.
type every struct {
	settings.Base
	Name    string        `envconfig:"X_NAME" default:"n"`
	Count   int           `envconfig:"X_COUNT" default:"3"`
	Big     int64         `envconfig:"X_BIG"`
	Ratio   float64       `envconfig:"X_RATIO" default:"0.5"`
	On      bool          `envconfig:"X_ON"`
	Every   time.Duration `envconfig:"X_EVERY" default:"1s"`
	Origins []string      `envconfig:"X_ORIGINS"`
	Level   slog.Level    `envconfig:"X_LEVEL" default:"warn"`
	Plain   string
	Skipped string `ignored:"true"`
}

// TestLoadReadsWhatEnvconfigReads: Load fills every kind of field the way
// envconfig.Process did from the same variables.
func TestLoadReadsWhatEnvconfigReads(t *testing.T) {
	vars := map[string]string{
		"APP_PORT": "8080", "X_NAME": "name", "X_COUNT": "0x10", "X_BIG": "-9000000000", "X_RATIO": "0.25",
		"X_ON": "true", "X_EVERY": "1m30s", "X_ORIGINS": "https://a,https://b", "X_LEVEL": "debug",
		"PLAIN": "p", "SKIPPED": "s", "METRICS_ADDR": "",
	}
	var viaEnvconfig every
	for k, v := range vars {
		t.Setenv(k, v)
	}
	t.Setenv("APP_API_TOKEN", appToken)
	t.Setenv("DAPR_API_TOKEN", daprToken)
	if err := envconfig.Process("", &viaEnvconfig); err != nil {
		t.Fatal(err)
	}
	var got every
	if err := settings.Load(withTokens(vars), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, viaEnvconfig) {
		t.Fatalf("Load read\n%+v\nenvconfig\n%+v", got, viaEnvconfig)
	}
	if got.Count != 16 || got.Skipped != "" || got.Plain != "p" || len(got.Origins) != 2 || got.MetricsAddr != "" {
		t.Fatalf("read %+v", got)
	}
}

// derived is a configuration with a field made from another.
type derived struct {
	settings.Base
	List  string   `envconfig:"TEST_LIST"`
	Items []string `ignored:"true"`
}

func (d *derived) Derive() error {
	if strings.Contains(d.List, ";") {
		return errors.New("TEST_LIST is comma-separated")
	}
	d.Items = strings.Split(d.List, ",")
	return nil
}

func TestLoadDerivesAndReportsTheDerivingErrorWithTheOthers(t *testing.T) {
	t.Parallel()
	cfg := derived{Base: settings.Base{Port: "8080"}}
	if err := settings.Load(withTokens(map[string]string{"TEST_LIST": "a,b"}), &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Items, []string{"a", "b"}) {
		t.Fatalf("items %q", cfg.Items)
	}
	if cfg.Settings().Port != "8080" {
		t.Fatalf("Settings() port %q", cfg.Settings().Port)
	}
	cfg = derived{Base: settings.Base{Port: "8080"}}
	err := settings.Load(withTokens(map[string]string{"TEST_LIST": "a;b", "APP_PORT": "http"}), &cfg)
	if err == nil || !strings.Contains(err.Error(), "TEST_LIST") || !strings.Contains(err.Error(), "APP_PORT") {
		t.Fatalf("err %v, want both TEST_LIST and APP_PORT named", err)
	}
}
