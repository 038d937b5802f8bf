package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/cors"
	"github.com/go-chi/httprate"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/pubsub"
)

// NewServer returns the gateway's handler. This file lists the whole
// public surface: which prefix goes to which service, and what guards it.
// Every answer under /api is papo's JSON, errors included. Background
// work (the ws replicas' health checks, relayed sockets, the services'
// status checks) stops when ctx ends.
func NewServer(ctx context.Context, log *slog.Logger, cfg Config, inv *invoke.Client, verifier authn.TokenVerifier, sidecarReady httpapi.Check) (http.Handler, error) {
	wsProxy, err := newWSProxy(ctx, cfg.WSUpstreams, cfg.WSHandoff, !cfg.TLSOn(), cfg.WSHealthInterval, cfg.AppAPIToken, verifier, log)
	if err != nil {
		return nil, err
	}
	trust, err := parseProxyTrust(cfg.TrustedProxies, cfg.ForwardedHeader)
	if err != nil {
		return nil, err
	}
	writeErr := func(w http.ResponseWriter, r *http.Request, err error) { httpapi.Error(w, r, log, err) }
	limited := func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, r, apierror.New(apierror.RateLimited, "rate_limited", "too many requests; retry after the time in Retry-After"))
	}
	perIP := httprate.Limit(cfg.RatePerIP, time.Minute,
		httprate.WithKeyFuncs(func(r *http.Request) (string, error) { return rateKey(clientAddrOf(r.Context())), nil }),
		httprate.WithLimitHandler(limited))
	perUser := httprate.Limit(cfg.RatePerUser, time.Minute,
		httprate.WithKeyFuncs(func(r *http.Request) (string, error) {
			c, _ := authn.FromContext(r.Context())
			return "user:" + c.UserID, nil
		}), httprate.WithLimitHandler(limited))
	requireToken := authn.Middleware(verifier, writeErr)
	to := func(appID string) http.Handler { return daprProxy(inv, appID, cfg.MaxBody, log) }
	cookies := sessionCookies{maxAge: cfg.SessionCookieMaxAge, log: log}
	board := newStatusBoard(inv, sidecarReady, cfg.StatusInterval, log)
	go board.run(ctx)
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, r, apierror.New(apierror.NotFound, "not_found", "no such route: %s %s", r.Method, r.URL.Path))
	}

	r := chi.NewRouter()
	// A method chi does not know (FOO) is refused before any route.
	r.MethodNotAllowed(httpapi.MethodNotAllowed)
	// The path check comes before routing: no route, and so no upstream,
	// sees a path that any hop behind the gateway would read otherwise.
	r.Use(httpapi.RequestIDs, httpapi.AccessLog(log), httpapi.Recover(log), securityHeaders,
		cleanPaths(writeErr), withClientAddrs(trust))
	if len(cfg.CORSOrigins) > 0 {
		r.Use(cors.Handler(cors.Options{
			AllowedOrigins:   cfg.CORSOrigins,
			AllowedMethods:   []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"},
			AllowedHeaders:   []string{"Authorization", "Content-Type", "X-Request-Id"},
			ExposedHeaders:   []string{"X-Request-Id", "Retry-After"},
			AllowCredentials: false,
			MaxAge:           600,
		}))
	}
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", handleReadyz(board))

	r.Route("/api/v1", func(r chi.Router) {
		r.Use(perIP)
		r.NotFound(notFound)
		r.MethodNotAllowed(httpapi.MethodNotAllowed)
		r.Method(http.MethodGet, "/status", handleStatus(board))
		// Open routes: no token yet, or the keys that verify tokens. Any
		// other method on them is 405 here, not a 401 from the /auth/*
		// route below.
		r.Group(func(r chi.Router) {
			r.Handle("/auth/register", only(http.MethodPost, to("auth")))
			r.Handle("/auth/login", only(http.MethodPost, cookies.login(to("auth"))))
			r.Handle("/auth/refresh", only(http.MethodPost, cookies.refresh(to("auth"), cfg.MaxBody)))
			r.Handle("/auth/jwks", only(http.MethodGet, to("auth")))
		})
		// Everything else needs a valid access token at the edge; the
		// owning service verifies it again.
		r.Group(func(r chi.Router) {
			r.Use(requireToken, perUser)
			r.Handle("/auth/logout", cookies.logout(to("auth")))
			r.Handle("/auth/*", to("auth"))
			r.Handle("/me", to("auth"))
			r.Handle("/users", to("auth"))
			r.Handle("/users/*", to("auth"))
			r.Handle("/rooms", to("message"))
			r.Put("/rooms/{id}/notifications", to("notification").ServeHTTP)
			r.Handle("/rooms/*", to("message"))
			r.Handle("/dms", to("message"))
			r.Handle("/presence", to("presence"))
			r.Handle("/devices", to("notification"))
			r.Handle("/devices/*", to("notification"))
		})
	})
	// Other API versions, and /api itself, are not the web client's.
	r.Handle("/api", http.HandlerFunc(notFound))
	r.Handle("/api/*", http.HandlerFunc(notFound))
	r.Handle("/ws", perIP(wsProxy))
	// The gateway's sidecar asks its app for subscriptions at start: the
	// gateway has none (it follows revocations over a streaming
	// subscription). Dapr's other callbacks are not the web client's.
	pubsub.Mount(r, log)
	r.Handle("/dapr/*", http.HandlerFunc(notFound))
	// The web client is read, never written to: other methods are 405.
	web := webClient()
	r.Method(http.MethodGet, "/*", web)
	r.Method(http.MethodHead, "/*", web)
	return r, nil
}

// only serves h for method, and answers any other 405 method_not_allowed
// with Allow.
func only(method string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			httpapi.MethodNotAllowed(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// securityHeaders sets the headers every answer carries: a strict
// Content-Security-Policy for the web client (scripts and styles only from
// this origin, no framing), no MIME sniffing, no referrer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}
