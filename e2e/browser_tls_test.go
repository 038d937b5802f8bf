package e2e

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserChatOverHTTPS: the web client, unchanged, works on a stack
// served over TLS — the page over HTTPS, its API calls and its WebSocket
// (wss://) to the same origin — in real headless Chromium that trusts the
// gateway's certificate and nothing else.
func TestBrowserChatOverHTTPS(t *testing.T) {
	s, _ := tlsStack(t)
	// Chromium on Linux reads trusted CAs from an NSS database; without
	// NSS's tools to write one, the test trusts the certificate the local
	// CA signed by its public key, the way Chromium allows for tests.
	browser := newBrowser(t, chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, s.TLS.Cert)))
	base := s.GatewayURL

	ana := newPerson(t, browser, base, "ana", "Ana Lima")
	bruno := newPerson(t, browser, base, "bruno", "Bruno Reis")
	ana.register()
	bruno.register()
	if proto := js[string](ana, `location.protocol`); proto != "https:" {
		t.Fatalf("the page is on %s, want https:", proto)
	}

	room := randomName("tls-")
	ana.do("create room "+room,
		chromedp.Click(chromedp.CSS("#new-room-btn")),
		chromedp.WaitVisible(chromedp.CSS("#room-name")),
		chromedp.SendKeys(chromedp.CSS("#room-name"), room),
		chromedp.Click(chromedp.CSS(`#room-form button[type="submit"]`)),
	)
	ana.waitFor("the new room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(room)))
	bruno.do("browse public rooms", chromedp.Click(chromedp.CSS("#browse-btn")))
	joinBtn := fmt.Sprintf(`#browse-list button[aria-label=%s]`, quote("Join "+room))
	bruno.do("join "+room, chromedp.WaitVisible(chromedp.CSS(joinBtn)), chromedp.Click(chromedp.CSS(joinBtn)))
	bruno.waitFor("the room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(room)))

	hello := "Olá Bruno, over wss."
	ana.send(hello)
	ana.waitFor("her message confirmed", confirmed(hello))
	bruno.waitFor("Ana's message", hasMessage(hello))
	reply := "Olá Ana, encrypted both ways."
	bruno.send(reply)
	ana.waitFor("Bruno's reply", hasMessage(reply))
	ana.shot("tls-01-ana-chat-over-https")
	ana.checkErrors()
	bruno.checkErrors()
}

// spkiHash is the base64 SHA-256 of the public key of the certificate in
// certFile, as Chromium's --ignore-certificate-errors-spki-list wants it.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
