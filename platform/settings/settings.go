// Package settings reads a service's configuration from the environment.
//
// A service declares one Config struct that embeds Base (the variables
// every service reads: its address, its sidecar's ports, the log level
// and what access tokens must say) and adds its own fields with
// `envconfig` tags, then calls Load once in run and passes the result
// down. Only main packages depend on this one, plus authn, which builds
// the verifier from Base. Nothing else reads the environment.
package settings

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"
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

// embedsBase is satisfied by Base and by every struct embedding it: the
// unexported method is promoted but cannot be implemented elsewhere.
type embedsBase interface{ base() *Base }

func (b *Base) base() *Base { return b }

// Load fills spec, a pointer to a struct, from the environment with
// envconfig: a variable that is set wins, then the field's `default` tag,
// then the value the field already holds. It then checks an embedded
// Base (ports and leeway) and calls spec's Validate if it has one. All
// problems found after reading are reported together.
func Load(spec any) error {
	if err := envconfig.Process("", spec); err != nil {
		return err
	}
	var errs []error
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
// naming the app.
func (b Base) Logger(w io.Writer, app string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: b.LogLevel})).With("app", app)
}
