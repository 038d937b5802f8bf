package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ListenSide binds addr, on which Serve (or ServeTLSConfig) serves h over
// plain HTTP next to the main listener, and shuts it down after it. It is
// for what must not share the main listener's protocol: the gateway's
// loopback port for its own sidecar (daprd calls its app over plain HTTP)
// while the public listener speaks TLS, or a plain-HTTP port that only
// redirects to HTTPS. It returns the bound address (addr may have port 0).
// Call it before Serve.
func (s *Server) ListenSide(addr string, h http.Handler) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          s.srv.ErrorLog,
	}
	s.side = append(s.side, sideServer{srv, JSONProtocolErrors(ln)})
	return ln.Addr(), nil
}

// ServeTLSConfig is Serve with the main listener speaking TLS as cfg
// says; cfg must give the certificate (Certificates or GetCertificate).
// net/http adds HTTP/2 and HTTP/1.1 to cfg's NextProtos when it names
// none, so REST is served over HTTP/2 and a WebSocket handshake, which
// needs HTTP/1.1, still finds it. Listeners added with ServeAlso and
// ListenSide stay plain.
func (s *Server) ServeTLSConfig(ctx context.Context, cfg *tls.Config, grace time.Duration) error {
	if cfg == nil || (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil) {
		s.closeListeners()
		return errors.New("serve TLS: no certificate configured")
	}
	s.srv.TLSConfig = cfg
	return s.serve(ctx, grace, func() error { return s.srv.ServeTLS(s.ln, "", "") })
}

// closeListeners closes every listener when serving never starts.
func (s *Server) closeListeners() {
	s.ln.Close()
	for _, ln := range s.extra {
		ln.Close()
	}
	for _, side := range s.side {
		side.ln.Close()
	}
}
