package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/papochat/papo/platform/servicetest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "papo test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRunServesTLSWhenACertificateIsConfigured: with a certificate and key
// the public port speaks only HTTPS (HTTP/2 for REST, so the WebSocket is
// WSS), its sidecar's port stays plain HTTP on loopback behind the app
// API token, the redirect port only redirects, and run stops when its
// context ends.
func TestRunServesTLSWhenACertificateIsConfigured(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	port, sidecarPort, redirectPort := freePort(t), freePort(t), freePort(t)
	env := servicetest.Env(map[string]string{
		"APP_HOST":                   "127.0.0.1",
		"APP_PORT":                   strconv.Itoa(port),
		"DAPR_HTTP_PORT":             strconv.Itoa(freePort(t)),
		"DAPR_GRPC_PORT":             strconv.Itoa(freePort(t)),
		"GATEWAY_TLS_CERT":           certFile,
		"GATEWAY_TLS_KEY":            keyFile,
		"GATEWAY_SIDECAR_PORT":       strconv.Itoa(sidecarPort),
		"GATEWAY_HTTP_REDIRECT_ADDR": "127.0.0.1:" + strconv.Itoa(redirectPort),
		"METRICS_ADDR":               "",
		"LOG_LEVEL":                  "error",
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, env, io.Discard) }()

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	base := "https://127.0.0.1:" + strconv.Itoa(port)
	resp := pollGet(t, hc, base+"/healthz")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz over TLS: %d", resp.StatusCode)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS header over TLS")
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("REST over TLS spoke %s, want HTTP/2", resp.Proto)
	}
	if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP answered 200 on a TLS gateway")
	}

	// The sidecar's port: plain HTTP, probes open, the rest behind the
	// app API token.
	sidecar := "http://127.0.0.1:" + strconv.Itoa(sidecarPort)
	resp = pollGet(t, http.DefaultClient, sidecar+"/healthz")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("sidecar port /healthz: %d, want 200", resp.StatusCode)
	}
	resp, err := http.Get(sidecar + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sidecar port without the app API token: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, sidecar+"/api/v1/status", nil)
	req.Header.Set("dapr-api-token", servicetest.AppToken)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("sidecar port with the app API token: %d", resp.StatusCode)
	}

	// The redirect port answers 308 to the same path over HTTPS.
	noFollow := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp = pollGet(t, noFollow, "http://127.0.0.1:"+strconv.Itoa(redirectPort)+"/api/v1/rooms?limit=5")
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), base+"/api/v1/rooms?limit=5"; resp.StatusCode != http.StatusPermanentRedirect || got != want {
		t.Errorf("redirect port: %d Location %q, want 308 %q", resp.StatusCode, got, want)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// pollGet GETs url until it answers, for up to 10 s.
func pollGet(t *testing.T, hc *http.Client, url string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := hc.Get(url)
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never answered: %v", url, err)
		}
		<-tick.C
	}
}

func TestConfigRejectsHalfATLSPair(t *testing.T) {
	c := Config{WSUpstreams: []string{"http://127.0.0.1:1"}, RatePerIP: 1, RatePerUser: 1, MaxBody: 1, WSHealthInterval: time.Second, GatewayTLS: GatewayTLS{TLSCert: "x"}}
	if err := c.Validate(); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
	c = Config{WSUpstreams: []string{"ftp://x"}, RatePerIP: 1, RatePerUser: 1, MaxBody: 1, WSHealthInterval: time.Second}
	if err := c.Validate(); err == nil {
		t.Fatal("a non-http ws upstream was accepted")
	}
}
