package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// MaxHeaderBytes bounds a request's line and headers on every papo
// server (net/http's default is 1 MiB). 32 KiB holds an 8 KiB access
// token twice over (Authorization and a WebSocket subprotocol) with room
// for the rest; a larger request is answered 431 before any handler runs
// (with papo's JSON error body over plain HTTP: JSONProtocolErrors).
const MaxHeaderBytes = 32 << 10

// Server is an http.Server bound to an explicit listener, so tests can
// listen on port 0 and read the address back with URL.
type Server struct {
	srv   *http.Server
	ln    net.Listener
	extra []net.Listener
	log   *slog.Logger

	// probesLn, when ListenProbes was called, serves the health routes
	// on a listener of its own.
	probesLn net.Listener
	// side are servers of other handlers on listeners of their own (the
	// probes, ListenSidecar, ServeRedirect), shut down after the main one.
	side []sideServer
}

// sideServer is one of Server.side.
type sideServer struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and returns a Server that serves h once Serve is called.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	// net/http's own refusals (431 and the like) are JSON too.
	ln = JSONProtocolErrors(ln)
	return &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:  ln,
		log: log,
	}, nil
}

// ListenApp is Listen for an app that its sidecar calls: every route but
// the probes needs the app API token (RequireAppToken), and when
// probeAddr is not empty the probes are served there too (ListenProbes).
// Every papo service but the gateway, whose listener is public, listens
// this way; public are paths anyone may GET (RequireAppToken).
func ListenApp(addr, probeAddr, appToken string, h http.Handler, log *slog.Logger, public ...string) (*Server, error) {
	s, err := Listen(addr, RequireAppToken(appToken, log, h, public...), log)
	if err != nil {
		return nil, err
	}
	if probeAddr != "" {
		if err := s.ListenProbes(probeAddr); err != nil {
			s.ln.Close()
			return nil, err
		}
	}
	return s, nil
}

// ListenProbes binds a second address, on which the server answers GET
// and HEAD of /healthz and /readyz (from its handler) and 404 to anything
// else. It is for probes from outside the pod — the kubelet's — while the
// app itself listens on loopback for its sidecar alone. Serve serves it
// and shuts it down with the main listener.
func (s *Server) ListenProbes(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for probes on %s: %w", addr, err)
	}
	ln = JSONProtocolErrors(ln)
	next := s.srv.Handler
	probes := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isProbe(r) {
				NotFound(w, r)
				return
			}
			next.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          s.srv.ErrorLog,
	}
	s.probesLn = ln
	s.side = append(s.side, sideServer{probes, ln})
	return nil
}

// ProbesAddr is the address ListenProbes bound, or nil.
func (s *Server) ProbesAddr() net.Addr {
	if s.probesLn == nil {
		return nil
	}
	return s.probesLn.Addr()
}

// URL is the base URL the server listens on.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// HTTPServer exposes the underlying server, e.g. to register shutdown hooks
// or set TLS.
func (s *Server) HTTPServer() *http.Server { return s.srv }

// ServeAlso adds a listener that Serve and ServeTLSConfig serve too, always
// without TLS (e.g. connections handed over by another process on the
// same machine, package handoff). Shutdown closes it with the others.
// Call it before Serve.
func (s *Server) ServeAlso(ln net.Listener) { s.extra = append(s.extra, ln) }

// Serve serves until ctx is done, then shuts down gracefully, giving
// in-flight requests up to grace to finish.
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	return s.serve(ctx, grace, func() error { return s.srv.Serve(s.ln) })
}

func (s *Server) serve(ctx context.Context, grace time.Duration, serve func() error) error {
	errc := make(chan error, 1+len(s.extra)+len(s.side))
	go func() { errc <- serve() }()
	for _, ln := range s.extra {
		go func() { errc <- s.srv.Serve(ln) }()
	}
	pending := 1 + len(s.extra)
	servers := []*http.Server{s.srv}
	for _, side := range s.side {
		go func() { errc <- side.srv.Serve(side.ln) }()
		servers = append(servers, side.srv)
		pending++
	}
	var failed error
	select {
	case err := <-errc:
		// One listener failed: stop the others too.
		pending--
		failed = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// The main listener (and those it serves too) drains first, the
	// probes and the other side listeners after it.
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) && failed == nil {
			failed = fmt.Errorf("shutdown: %w", err)
		}
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && failed == nil {
			failed = fmt.Errorf("serve: %w", err)
		}
	}
	return failed
}
