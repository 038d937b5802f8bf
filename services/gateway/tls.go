package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/platform/httpapi"
)

// GatewayTLS is the part of Config that says how the public listener
// (APP_HOST:APP_PORT) speaks: plain HTTP, or TLS with a certificate
// reloaded from disk when it changes (docs/ops.md, "TLS").
//
// With TLS the public port speaks nothing else, so the gateway's own
// sidecar, which calls its app over plain HTTP (/dapr/subscribe, service
// invocation of /healthz), gets a port of its own on loopback:
// SidecarPort, where every route but the probes needs the app API token,
// as on every other service's port. That is the sidecar's --app-port.
type GatewayTLS struct {
	// TLSCert and TLSKey are PEM files; both set turn TLS on.
	TLSCert string `envconfig:"GATEWAY_TLS_CERT"`
	TLSKey  string `envconfig:"GATEWAY_TLS_KEY"`
	// SidecarPort is the loopback port the gateway's sidecar calls
	// (daprd --app-port). Required with TLS; without it, optional (the
	// sidecar may call APP_PORT).
	SidecarPort string `envconfig:"GATEWAY_SIDECAR_PORT"`
	// HTTPRedirectAddr, with TLS, is a host:port where plain HTTP is
	// answered with nothing but a redirect (308) to the same path over
	// HTTPS on APP_PORT.
	HTTPRedirectAddr string `envconfig:"GATEWAY_HTTP_REDIRECT_ADDR"`
}

// TLSOn reports whether the public listener speaks TLS.
func (c GatewayTLS) TLSOn() bool { return c.TLSCert != "" }

// check validates the TLS settings against the public port.
func (c GatewayTLS) check(appPort string) error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be set together")
	}
	if c.SidecarPort != "" {
		if n, err := strconv.Atoi(c.SidecarPort); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("GATEWAY_SIDECAR_PORT %q is not a port number (1-65535)", c.SidecarPort)
		}
		if c.SidecarPort == appPort {
			return fmt.Errorf("GATEWAY_SIDECAR_PORT %s is APP_PORT: the sidecar's port must be another", c.SidecarPort)
		}
	}
	if !c.TLSOn() {
		if c.HTTPRedirectAddr != "" {
			return fmt.Errorf("GATEWAY_HTTP_REDIRECT_ADDR needs GATEWAY_TLS_CERT: it redirects to HTTPS")
		}
		return nil
	}
	if c.SidecarPort == "" {
		return fmt.Errorf("GATEWAY_SIDECAR_PORT must be set with GATEWAY_TLS_CERT: the gateway's sidecar calls it over plain HTTP on loopback (its --app-port), since APP_PORT speaks only TLS")
	}
	if c.HTTPRedirectAddr != "" {
		if _, port, err := net.SplitHostPort(c.HTTPRedirectAddr); err != nil || port == "" {
			return fmt.Errorf("GATEWAY_HTTP_REDIRECT_ADDR %q is not host:port", c.HTTPRedirectAddr)
		}
	}
	return nil
}

// serveGateway serves the gateway's handler on srv (the public listener)
// until ctx ends: over TLS when configured, with the sidecar's loopback
// port and the redirect port next to it.
func serveGateway(ctx context.Context, cfg Config, srv *httpapi.Server, log *slog.Logger) error {
	const grace = 10 * time.Second
	if cfg.SidecarPort != "" {
		addr, err := srv.ListenSide(net.JoinHostPort("127.0.0.1", cfg.SidecarPort),
			httpapi.RequireAppToken(cfg.AppAPIToken, log, srv.HTTPServer().Handler))
		if err != nil {
			return fmt.Errorf("the sidecar's port: %w", err)
		}
		log.Info("gateway serves its sidecar", "url", "http://"+addr.String())
	}
	if !cfg.TLSOn() {
		return srv.Serve(ctx, grace)
	}
	certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
	if err != nil {
		return err
	}
	_, httpsPort, _ := net.SplitHostPort(srv.Addr().String())
	if cfg.HTTPRedirectAddr != "" {
		addr, err := srv.ListenSide(cfg.HTTPRedirectAddr, redirectToHTTPS(httpsPort))
		if err != nil {
			return fmt.Errorf("GATEWAY_HTTP_REDIRECT_ADDR: %w", err)
		}
		log.Info("gateway redirects plain HTTP to HTTPS", "addr", addr.String())
	}
	if len(cfg.WSHandoff) > 0 {
		// The TLS session lives in this process once the handshake is
		// done: a socket handed to a replica would carry ciphertext the
		// replica has no keys for.
		log.Info("GATEWAY_WS_HANDOFF is not used with TLS: a TLS session cannot change process; /ws is relayed")
	}
	log.Info("gateway serves TLS", "url", "https://"+srv.Addr().String(), "cert", cfg.TLSCert)
	return srv.ServeTLSConfig(ctx, gatewayTLSConfig(certs), grace)
}

// gatewayTLSConfig is the public listener's TLS: TLS 1.2 at least (1.0
// and 1.1 are refused at the handshake), Go's default cipher suites, and
// the certificate from certs, read again when its files change.
func gatewayTLSConfig(certs *certReloader) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
}

// redirectToHTTPS answers every request with a permanent redirect (308:
// the method and body are kept) to the same host and path on httpsPort.
func redirectToHTTPS(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" {
			httpapi.Encode(w, http.StatusBadRequest, httpapi.ErrorBody{Error: httpapi.ErrorDetail{
				Code: "bad_request", Message: "a Host header is needed to redirect to HTTPS"}})
			return
		}
		target := "https://" + net.JoinHostPort(host, httpsPort)
		if httpsPort == "443" {
			target = "https://" + host
			if strings.Contains(host, ":") {
				target = "https://[" + host + "]"
			}
		}
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// certReloader serves a certificate from two PEM files and reads them
// again at the first handshake after either changes (is replaced by
// another file, as a rename or a Kubernetes Secret's symlink swap does,
// or gets another modification time or size), so a renewed certificate (cert-manager, certbot, a
// rotation by hand) is served to the next connection without a restart.
// A pair that does not load — the key is not written yet, or does not
// match — is logged once and the previous certificate served until the
// files change again.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	loaded stamps // the files' stamps when cert was read
	failed stamps // the stamps of the last pair that did not load
}

// stamps tell the certificate and key files from those read before.
type stamps [2]os.FileInfo

// same reports whether every file is the same, unchanged.
func (s stamps) same(o stamps) bool {
	for i := range s {
		a, b := s[i], o[i]
		if a == nil || b == nil || !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size() {
			return false
		}
	}
	return true
}

// newCertReloader reads the pair once; an error here stops the gateway.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	st, err := r.stamps()
	if err != nil {
		return nil, err
	}
	if err := r.load(st); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// read again first when the files changed.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stamps()
	if err != nil || st.same(r.loaded) || st.same(r.failed) {
		// A file missing for a moment (replaced by a rename) is no
		// reason to fail handshakes: the certificate in memory is good.
		return r.cert, nil
	}
	if err := r.load(st); err != nil {
		r.failed = st
		r.log.Warn("TLS certificate files changed but do not load; serving the previous certificate", "err", err)
	}
	return r.cert, nil
}

func (r *certReloader) stamps() (stamps, error) {
	var out stamps
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("TLS certificate: %w", err)
		}
		out[i] = fi
	}
	return out, nil
}

// load reads the pair; r.mu is held (or r not shared yet).
func (r *certReloader) load(st stamps) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("TLS certificate %s: %w", r.certFile, err)
	}
	cert.Leaf = leaf
	r.cert, r.loaded = &cert, st
	r.log.Info("TLS certificate loaded", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
