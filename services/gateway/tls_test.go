package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for 127.0.0.1 that its pool verifies.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "papo test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// issue writes a certificate with serial and a fresh key to certFile and
// keyFile, each by a rename over the old file, as certificate tools do.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	replace(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func replace(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// tlsServer serves 200 over TLS with the gateway's TLS configuration.
func tlsServer(t *testing.T, certs *certReloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		TLSConfig: gatewayTLSConfig(certs),
		ErrorLog:  slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelWarn),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// servedSerial makes a new TLS connection to addr, verified against
// pool, and returns the serial of the certificate served.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestCertificateSwappedOnDiskIsServedToTheNextConnection: a rotated
// certificate is served without a restart; a pair that does not load
// (a key that is not the certificate's) keeps the previous one in
// service, and the next good pair is taken up again.
func TestCertificateSwappedOnDiskIsServedToTheNextConnection(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, 100, certFile, keyFile)
	certs, err := newCertReloader(certFile, keyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, certs)
	if got := servedSerial(t, addr, ca.pool); got != 100 {
		t.Fatalf("served serial %d, want 100", got)
	}

	ca.issue(t, 101, certFile, keyFile)
	if got := servedSerial(t, addr, ca.pool); got != 101 {
		t.Fatalf("after the swap: served serial %d, want 101", got)
	}

	// Half a rotation: a new key, the old certificate.
	other := filepath.Join(dir, "other")
	ca.issue(t, 102, other+".crt", other+".key")
	data, err := os.ReadFile(other + ".key")
	if err != nil {
		t.Fatal(err)
	}
	replace(t, keyFile, data)
	if got := servedSerial(t, addr, ca.pool); got != 101 {
		t.Fatalf("with a key that does not match: served serial %d, want the previous 101", got)
	}
	data, err = os.ReadFile(other + ".crt")
	if err != nil {
		t.Fatal(err)
	}
	replace(t, certFile, data)
	if got := servedSerial(t, addr, ca.pool); got != 102 {
		t.Fatalf("once the pair matches again: served serial %d, want 102", got)
	}

	// A file gone for a moment fails no handshake.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, ca.pool); got != 102 {
		t.Fatalf("with the certificate file missing: served serial %d, want 102", got)
	}
}

// TestTLSBelow12IsRefused: the handshake fails for TLS 1.0 and 1.1 and
// works for 1.2 and 1.3.
func TestTLSBelow12IsRefused(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, 1, certFile, keyFile)
	certs, err := newCertReloader(certFile, keyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, certs)
	for _, tc := range []struct {
		name    string
		version uint16
		ok      bool
	}{
		{"TLS 1.0", tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, MinVersion: tc.version, MaxVersion: tc.version})
			if err == nil {
				conn.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("handshake accepted")
			}
		})
	}
}

func TestNewCertReloaderRefusesABadPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := newCertReloader(certFile, keyFile, log); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing files: %v, want not exist", err)
	}
	ca := newTestCA(t)
	ca.issue(t, 1, certFile, keyFile)
	ca.issue(t, 2, certFile+".2", keyFile+".2")
	if _, err := newCertReloader(certFile, keyFile+".2", log); err == nil {
		t.Error("a key that is not the certificate's was accepted")
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	for _, tc := range []struct{ name, host, port, target, want string }{
		{"host and port", "127.0.0.1:8080", "8443", "/api/v1/rooms?x=1", "https://127.0.0.1:8443/api/v1/rooms?x=1"},
		{"no port", "chat.example", "8443", "/", "https://chat.example:8443/"},
		{"default port", "chat.example:80", "443", "/ws", "https://chat.example/ws"},
		{"IPv6", "[::1]:8080", "8443", "/", "https://[::1]:8443/"},
		{"IPv6 default port", "[::1]", "443", "/", "https://[::1]/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader("{}"))
			r.Host = tc.host
			w := httptest.NewRecorder()
			redirectToHTTPS(tc.port).ServeHTTP(w, r)
			if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != tc.want {
				t.Errorf("%d %q, want 308 %q", w.Code, w.Header().Get("Location"), tc.want)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Host = ""
	w := httptest.NewRecorder()
	redirectToHTTPS("8443").ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("no Host: %d, want 400", w.Code)
	}
}

func TestGatewayTLSSettingsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  GatewayTLS
		want string // "" : valid
	}{
		{"plain", GatewayTLS{}, ""},
		{"plain with a sidecar port", GatewayTLS{SidecarPort: "9000"}, ""},
		{"TLS", GatewayTLS{TLSCert: "c", TLSKey: "k", SidecarPort: "9000", HTTPRedirectAddr: ":8080"}, ""},
		{"certificate without key", GatewayTLS{TLSCert: "c", SidecarPort: "9000"}, "set together"},
		{"TLS without a sidecar port", GatewayTLS{TLSCert: "c", TLSKey: "k"}, "GATEWAY_SIDECAR_PORT must be set"},
		{"sidecar port not a number", GatewayTLS{SidecarPort: "x"}, "not a port number"},
		{"sidecar port out of range", GatewayTLS{SidecarPort: "70000"}, "not a port number"},
		{"sidecar port is APP_PORT", GatewayTLS{SidecarPort: "8443"}, "is APP_PORT"},
		{"redirect without TLS", GatewayTLS{HTTPRedirectAddr: ":8080"}, "needs GATEWAY_TLS_CERT"},
		{"redirect not host:port", GatewayTLS{TLSCert: "c", TLSKey: "k", SidecarPort: "9000", HTTPRedirectAddr: "8080"}, "not host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tls.check("8443")
			if tc.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}
