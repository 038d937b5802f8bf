package launcher

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func serialOf(t *testing.T, path string) string {
	t.Helper()
	c, err := readCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// TestLocalTLSIsMadeOnceAndKeptAcrossStarts: the first start makes a CA
// and a certificate for the gateway's address that the CA's pool
// verifies; the next start keeps both; another address gets a new
// certificate from the same CA; Renew makes a new one.
func TestLocalTLSIsMadeOnceAndKeptAcrossStarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, err := localTLS(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{f.CAKey, f.Key} {
		fi, err := os.Stat(key)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, fi.Mode().Perm())
		}
	}
	pool, err := f.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := readCert(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", host, err)
		}
	}
	ca, leaf := serialOf(t, f.CA), serialOf(t, f.Cert)

	again, err := localTLS(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if serialOf(t, again.CA) != ca || serialOf(t, again.Cert) != leaf {
		t.Error("a second start made a new CA or certificate")
	}

	other, err := localTLS(dir, "chat.test")
	if err != nil {
		t.Fatal(err)
	}
	if serialOf(t, other.CA) != ca {
		t.Error("another address made a new CA")
	}
	if serialOf(t, other.Cert) == leaf {
		t.Error("another address kept a certificate that does not name it")
	}
	cert, _ = readCert(other.Cert)
	if err := cert.VerifyHostname("chat.test"); err != nil {
		t.Errorf("the new certificate: %v", err)
	}

	renewed := serialOf(t, other.Cert)
	if err := other.Renew(); err != nil {
		t.Fatal(err)
	}
	if serialOf(t, other.Cert) == renewed {
		t.Error("Renew kept the serial")
	}
}

func TestAnHTTPRedirectNeedsTLS(t *testing.T) {
	s := &Stack{opts: Options{GatewayAddr: "127.0.0.1:8443", HTTPRedirectAddr: "127.0.0.1:8080"}, DataDir: t.TempDir()}
	if err := s.setUpTLS(); err == nil {
		t.Fatal("a redirect without TLS was accepted")
	}
}
