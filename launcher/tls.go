package launcher

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TLSFiles are the PEM files of a stack served over HTTPS
// (Options.TLS): a local certificate authority made once per data dir,
// and the gateway's certificate, which it signs, for the gateway's
// address, localhost, 127.0.0.1 and ::1. They live in <DataDir>/tls; the
// keys are readable by their owner only.
type TLSFiles struct {
	CA, CAKey, Cert, Key string
	// Hosts are the names and addresses the certificate is for.
	Hosts []string
}

// Validity of what the launcher makes: the CA lasts ten years, the
// gateway's certificate 397 days (what browsers accept at most) and is
// made again when a start finds it within renewBefore of its end.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 397 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// localTLS makes (or finds, from an earlier start) the CA and the
// gateway's certificate in dir for gatewayHost.
func localTLS(dir, gatewayHost string) (TLSFiles, error) {
	f := TLSFiles{
		CA:    filepath.Join(dir, "ca.pem"),
		CAKey: filepath.Join(dir, "ca-key.pem"),
		Cert:  filepath.Join(dir, "gateway.pem"),
		Key:   filepath.Join(dir, "gateway-key.pem"),
		Hosts: certHosts(gatewayHost),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	if _, err := os.Stat(f.CA); errors.Is(err, os.ErrNotExist) {
		if err := f.makeCA(); err != nil {
			return f, err
		}
	}
	ca, _, err := f.loadCA()
	if err != nil {
		return f, err
	}
	if f.certStillGood(ca) {
		return f, nil
	}
	return f, f.Renew()
}

// certHosts are the names a local gateway is reached by.
func certHosts(gatewayHost string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	switch gatewayHost {
	case "", "0.0.0.0", "::":
		// Every interface: the machine's name too.
		if name, err := os.Hostname(); err == nil && name != "" && name != "localhost" {
			hosts = append(hosts, name)
		}
	case "localhost", "127.0.0.1", "::1":
	default:
		hosts = append(hosts, gatewayHost)
	}
	return hosts
}

func (f TLSFiles) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make the local CA's key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	name, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"papo local development"}, CommonName: "papo local CA (" + name + ")"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make the local CA: %w", err)
	}
	if err := writeKey(f.CAKey, key); err != nil {
		return err
	}
	return writePEM(f.CA, "CERTIFICATE", der, 0o644)
}

func (f TLSFiles) loadCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := readCert(f.CA)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(f.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("the local CA's key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, fmt.Errorf("the local CA's key %s: no PEM block", f.CAKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("the local CA's key %s: %w", f.CAKey, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("the local CA's key %s is not an ECDSA key", f.CAKey)
	}
	return cert, key, nil
}

// certStillGood reports whether the gateway's certificate is there,
// signed by ca, for every host, and far from its end.
func (f TLSFiles) certStillGood(ca *x509.Certificate) bool {
	cert, err := readCert(f.Cert)
	if err != nil || cert.CheckSignatureFrom(ca) != nil || time.Until(cert.NotAfter) < renewBefore {
		return false
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		return false
	}
	for _, h := range f.Hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// Renew makes a new gateway certificate (new key, new serial) signed by
// the local CA and puts it in place of the old one, key first, each file
// by a rename: a running gateway serves it from its next connection.
func (f TLSFiles) Renew() error {
	ca, caKey, err := f.loadCA()
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make the gateway's key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"papo local development"}, CommonName: f.Hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range f.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("make the gateway's certificate: %w", err)
	}
	if err := writeKey(f.Key, key); err != nil {
		return err
	}
	return writePEM(f.Cert, "CERTIFICATE", der, 0o644)
}

// CertPool is a pool holding the local CA: what a client trusts to call
// the stack over HTTPS.
func (f TLSFiles) CertPool() (*x509.CertPool, error) {
	ca, err := readCert(f.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

// TrustHelp says how to trust the local CA, for `make run TLS=1`.
func (f TLSFiles) TrustHelp(url string) string {
	return fmt.Sprintf(`papo: HTTPS with a local certificate authority, %[1]s
  (made once for this data dir; its key never leaves it). To trust it:
    curl:           curl --cacert %[1]s %[2]s/healthz
    Debian/Ubuntu:  sudo cp %[1]s /usr/local/share/ca-certificates/papo-local-ca.crt && sudo update-ca-certificates
    Fedora/RHEL:    sudo cp %[1]s /etc/pki/ca-trust/source/anchors/papo-local-ca.pem && sudo update-ca-trust
    macOS:          sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %[1]s
    Chrome/Firefox on Linux keep their own store: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n papo-local-ca -i %[1]s
      (or Settings → Privacy and security → Certificates → Authorities → Import)
`, f.CA, url)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writePEM writes one PEM block to a temporary file and renames it over
// path, so a reader never sees half a file.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: typ, Bytes: der}); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("make a certificate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// setUpTLS makes the stack's TLS files when Options.TLS is set.
func (s *Stack) setUpTLS() error {
	if !s.opts.TLS {
		if s.opts.HTTPRedirectAddr != "" {
			return errors.New("an HTTP redirect address needs TLS: it redirects to HTTPS")
		}
		return nil
	}
	host, _, err := net.SplitHostPort(s.opts.GatewayAddr)
	if err != nil {
		return fmt.Errorf("gateway address %q: %w", s.opts.GatewayAddr, err)
	}
	files, err := localTLS(filepath.Join(s.DataDir, "tls"), host)
	if err != nil {
		return fmt.Errorf("the local CA and the gateway's certificate: %w", err)
	}
	s.TLS = &files
	return nil
}

// splitGatewayPorts gives the gateway, with TLS, a second port: a.Port
// becomes a plain-HTTP loopback port for its sidecar and the launcher's
// probes (GATEWAY_SIDECAR_PORT), and PublicPort keeps the public one,
// which speaks only TLS. Without TLS both are the same port.
func (s *Stack) splitGatewayPorts(a *App) error {
	a.PublicPort = a.Port
	if !s.opts.TLS {
		return nil
	}
	p, err := freePort()
	if err != nil {
		return err
	}
	a.Port = p
	return nil
}

// gatewayEnv is the gateway's TLS environment.
func (s *Stack) gatewayEnv(a *App) []string {
	if s.TLS == nil {
		return nil
	}
	env := []string{
		"GATEWAY_TLS_CERT=" + s.TLS.Cert,
		"GATEWAY_TLS_KEY=" + s.TLS.Key,
		"GATEWAY_SIDECAR_PORT=" + strconv.Itoa(a.Port),
	}
	if s.opts.HTTPRedirectAddr != "" {
		env = append(env, "GATEWAY_HTTP_REDIRECT_ADDR="+s.opts.HTTPRedirectAddr)
	}
	return env
}

// gatewayScheme is the public entry's: https with TLS.
func (s *Stack) gatewayScheme() string {
	if s.opts.TLS {
		return "https"
	}
	return "http"
}

// checkPublicTLS makes sure the public entry answers over HTTPS with the
// certificate the local CA signed: the probes went to the sidecar's
// plain port.
func (s *Stack) checkPublicTLS(ctx context.Context) error {
	if s.TLS == nil {
		return nil
	}
	pool, err := s.TLS.CertPool()
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayURL+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("the gateway over HTTPS: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the gateway over HTTPS: /healthz answered %s", resp.Status)
	}
	return nil
}

// gatewayOrigins are the Origins a browser on the gateway sends, which
// the ws replicas accept.
func (s *Stack) gatewayOrigins() string {
	port := strconv.Itoa(s.gatewayPort())
	scheme := s.gatewayScheme()
	return strings.Join([]string{scheme + "://127.0.0.1:" + port, scheme + "://localhost:" + port}, ",")
}
