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

// Server is an http.Server bound to an explicit listener, so tests can
// listen on port 0 and read the address back with URL.
type Server struct {
	srv   *http.Server
	ln    net.Listener
	extra []net.Listener
	log   *slog.Logger
}

// Listen binds addr and returns a Server that serves h once Serve is called.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:  ln,
		log: log,
	}, nil
}

// URL is the base URL the server listens on.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// HTTPServer exposes the underlying server, e.g. to register shutdown hooks
// or set TLS.
func (s *Server) HTTPServer() *http.Server { return s.srv }

// ServeAlso adds a listener that Serve and ServeTLS serve too, always
// without TLS (e.g. connections handed over by another process on the
// same machine, package handoff). Shutdown closes it with the others.
// Call it before Serve.
func (s *Server) ServeAlso(ln net.Listener) { s.extra = append(s.extra, ln) }

// Serve serves until ctx is done, then shuts down gracefully, giving
// in-flight requests up to grace to finish.
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	return s.serve(ctx, grace, func() error { return s.srv.Serve(s.ln) })
}

// ServeTLS is Serve over TLS with the given certificate and key files.
func (s *Server) ServeTLS(ctx context.Context, certFile, keyFile string, grace time.Duration) error {
	return s.serve(ctx, grace, func() error { return s.srv.ServeTLS(s.ln, certFile, keyFile) })
}

func (s *Server) serve(ctx context.Context, grace time.Duration, serve func() error) error {
	errc := make(chan error, 1+len(s.extra))
	go func() { errc <- serve() }()
	for _, ln := range s.extra {
		go func() { errc <- s.srv.Serve(ln) }()
	}
	pending := 1 + len(s.extra)
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
	if err := s.srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) && failed == nil {
		failed = fmt.Errorf("shutdown: %w", err)
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && failed == nil {
			failed = fmt.Errorf("serve: %w", err)
		}
	}
	return failed
}
