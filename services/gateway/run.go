package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/sidecar"
)

// Config is the gateway's configuration, read from the environment.
type Config struct {
	Host         string        `envconfig:"APP_HOST" default:"0.0.0.0"`
	Port         string        `envconfig:"APP_PORT" default:"8080"`
	DaprHTTPPort string        `envconfig:"DAPR_HTTP_PORT" default:"3500"`
	DaprGRPCPort string        `envconfig:"DAPR_GRPC_PORT" default:"50001"`
	LogLevel     slog.Level    `envconfig:"LOG_LEVEL" default:"info"`
	Issuer       string        `envconfig:"AUTH_ISSUER" default:"papo"`
	Audience     string        `envconfig:"AUTH_AUDIENCE" default:"papo"`
	Leeway       time.Duration `envconfig:"AUTH_LEEWAY" default:"30s"`
	// WSUpstreams are the ws replicas' base URLs; on Kubernetes one
	// Service URL that balances over them.
	WSUpstreams []string `envconfig:"GATEWAY_WS_UPSTREAMS" default:"http://127.0.0.1:8081"`
	// Rate limits: requests per minute per client address and per user.
	RatePerIP   int `envconfig:"GATEWAY_RATE_PER_IP" default:"1200"`
	RatePerUser int `envconfig:"GATEWAY_RATE_PER_USER" default:"600"`
	// MaxBody bounds request bodies on /api/v1.
	MaxBody     int64    `envconfig:"GATEWAY_MAX_BODY" default:"65536"`
	CORSOrigins []string `envconfig:"GATEWAY_CORS_ORIGINS"`
	TLSCert     string   `envconfig:"GATEWAY_TLS_CERT"`
	// TrustedIssuers lists external OIDC issuers whose tokens are accepted
	// too (JSON, see docs/auth.md).
	TrustedIssuers string `envconfig:"AUTH_TRUSTED_ISSUERS"`
	TLSKey         string `envconfig:"GATEWAY_TLS_KEY"`
}

func (c Config) validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be set together")
	}
	if len(c.WSUpstreams) == 0 {
		return fmt.Errorf("GATEWAY_WS_UPSTREAMS is empty")
	}
	for _, u := range c.WSUpstreams {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("GATEWAY_WS_UPSTREAMS: %q is not an http(s) URL", u)
		}
	}
	if _, err := authn.ParseTrustedIssuers(c.TrustedIssuers); err != nil {
		return fmt.Errorf("AUTH_TRUSTED_ISSUERS: %w", err)
	}
	if c.RatePerIP <= 0 || c.RatePerUser <= 0 || c.MaxBody <= 0 {
		return fmt.Errorf("rate limits and GATEWAY_MAX_BODY must be positive")
	}
	return nil
}

func run(ctx context.Context, stdout io.Writer) error {
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("app", "gateway")

	inv := invoke.New(cfg.DaprHTTPPort)
	dc, err := sidecar.Client(cfg.DaprGRPCPort)
	if err != nil {
		return err
	}
	defer dc.Close()
	keys := authn.NewRemoteKeys(inv, "auth", authn.RemoteKeysOptions{})
	revoked := authn.NewRevocations()
	trusted, _ := authn.ParseTrustedIssuers(cfg.TrustedIssuers) // validated above
	verifier := authn.NewVerifier(authn.Config{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway}, keys,
		authn.WithRevocations(revoked),
		authn.WithTrustedIssuers(authn.NewTrustedIssuers(trusted, nil, authn.RemoteKeysOptions{}), authn.NewRemoteIdentities(inv, "auth")))
	probe := sidecar.NewProbe(cfg.DaprHTTPPort)

	// Revoked sessions are refused at the edge as soon as auth announces
	// them, not only when their tokens expire.
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	go func() {
		if err := probe.Wait(followCtx); err != nil {
			return
		}
		_ = authn.FollowRevocations(followCtx, dc, revoked, log, nil)
	}()

	handler, err := NewServer(log, cfg, inv, verifier, probe.Check)
	if err != nil {
		return err
	}
	srv, err := httpapi.Listen(net.JoinHostPort(cfg.Host, cfg.Port), handler, log)
	if err != nil {
		return err
	}
	log.Info("gateway listening", "url", srv.URL(), "ws_upstreams", cfg.WSUpstreams)
	if cfg.TLSCert != "" {
		return srv.ServeTLS(ctx, cfg.TLSCert, cfg.TLSKey, 10*time.Second)
	}
	return srv.Serve(ctx, 10*time.Second)
}
