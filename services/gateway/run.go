package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/settings"
)

// Config is the gateway's configuration, read from the environment
// (settings.Base plus the variables below).
type Config struct {
	settings.Base
	// WSUpstreams are the ws replicas' base URLs; on Kubernetes one
	// Service URL that balances over them.
	WSUpstreams []string `envconfig:"GATEWAY_WS_UPSTREAMS" default:"http://127.0.0.1:8081"`
	// WSHandoff are Unix socket paths, one per entry of WSUpstreams and
	// in the same order (an empty entry: none), on which ws replicas of
	// this machine take over clients' connections (their
	// WS_HANDOFF_SOCKET). Unset, or with TLS, /ws is relayed.
	WSHandoff []string `envconfig:"GATEWAY_WS_HANDOFF"`
	// WSHealthInterval is how often each ws replica's /readyz is checked.
	WSHealthInterval time.Duration `envconfig:"GATEWAY_WS_HEALTH_INTERVAL" default:"250ms"`
	// Rate limits: requests per minute per client address and per user.
	RatePerIP   int `envconfig:"GATEWAY_RATE_PER_IP" default:"1200"`
	RatePerUser int `envconfig:"GATEWAY_RATE_PER_USER" default:"600"`
	// MaxBody bounds request bodies on /api/v1.
	MaxBody     int64    `envconfig:"GATEWAY_MAX_BODY" default:"65536"`
	CORSOrigins []string `envconfig:"GATEWAY_CORS_ORIGINS"`
	// TrustedProxies are the addresses (CIDRs) of the proxies in front of
	// the gateway — a load balancer, an ingress — whose ForwardedHeader is
	// believed about the client's address. Empty: the connection's peer is
	// the client, whatever the headers say.
	TrustedProxies  []string `envconfig:"GATEWAY_TRUSTED_PROXIES"`
	ForwardedHeader string   `envconfig:"GATEWAY_FORWARDED_HEADER" default:"X-Forwarded-For"`
	// StatusInterval is how often the gateway asks every service's
	// /readyz (GET /api/v1/status, the gateway's /readyz).
	StatusInterval time.Duration `envconfig:"GATEWAY_STATUS_INTERVAL" default:"1s"`
	// GatewayTLS: TLS on the public listener (tls.go).
	GatewayTLS
	// SessionCookieMaxAge is the lifetime of the web client's refresh
	// cookie (docs/web.md): auth's SESSION_TTL.
	SessionCookieMaxAge time.Duration `envconfig:"GATEWAY_SESSION_COOKIE_MAX_AGE" default:"720h"`
}

// Validate implements settings.Validator. AUTH_TRUSTED_ISSUERS is checked
// where it is read, by authn.StartServiceVerifier.
func (c Config) Validate() error {
	if err := c.GatewayTLS.check(c.Port); err != nil {
		return err
	}
	if len(c.WSUpstreams) == 0 {
		return fmt.Errorf("GATEWAY_WS_UPSTREAMS is empty")
	}
	for _, u := range c.WSUpstreams {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("GATEWAY_WS_UPSTREAMS: %q is not an http(s) URL", u)
		}
	}
	if len(c.WSHandoff) > 0 && len(c.WSHandoff) != len(c.WSUpstreams) {
		return fmt.Errorf("GATEWAY_WS_HANDOFF has %d entries for %d GATEWAY_WS_UPSTREAMS: give one socket per upstream, in order", len(c.WSHandoff), len(c.WSUpstreams))
	}
	if c.WSHealthInterval <= 0 {
		return fmt.Errorf("GATEWAY_WS_HEALTH_INTERVAL must be positive")
	}
	if c.StatusInterval <= 0 {
		return fmt.Errorf("GATEWAY_STATUS_INTERVAL must be positive")
	}
	if c.SessionCookieMaxAge < time.Minute {
		return fmt.Errorf("GATEWAY_SESSION_COOKIE_MAX_AGE must be at least 1m")
	}
	if c.RatePerIP <= 0 || c.RatePerUser <= 0 || c.MaxBody <= 0 {
		return fmt.Errorf("rate limits and GATEWAY_MAX_BODY must be positive")
	}
	if _, err := parseProxyTrust(c.TrustedProxies, c.ForwardedHeader); err != nil {
		return err
	}
	return nil
}

// defaults is Config before the environment is read: the gateway
// listens on 8080 unless APP_PORT says otherwise.
func defaults() Config { return Config{Base: settings.Base{Port: "8080"}} }

// run starts the gateway and blocks until ctx is done.
func run(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error {
	return service.Run(ctx, getenv, stdout, "gateway", defaults(), serve)
}

// serve builds the gateway on rt and serves until ctx is done.
func serve(ctx context.Context, rt *service.Runtime, cfg Config) error {
	log, tel, dc, inv := rt.Log, rt.Tel, rt.Sidecar, rt.Invoke
	// Revoked sessions are refused at the edge as soon as auth announces
	// them, not only when their tokens expire.
	verifier, stopFollowing, err := authn.StartServiceVerifier(ctx, cfg.Base, inv, dc, log, authn.ServiceOptions{})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer stopFollowing()
	probe := rt.Probe

	handler, err := NewServer(ctx, log, cfg, inv, verifier, probe.Check)
	if err != nil {
		return err
	}
	srv, err := httpapi.Listen(cfg.Addr(), observe(tel.Registry, tel.Traces, handler), log)
	if err != nil {
		return err
	}
	log.Info("gateway listening", "addr", srv.Addr().String(), "tls", cfg.TLSOn(), "ws_upstreams", cfg.WSUpstreams, "ws_handoff", cfg.WSHandoff)
	return serveGateway(ctx, cfg, srv, log)
}
