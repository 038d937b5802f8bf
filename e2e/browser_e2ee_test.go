package e2e

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// TestBrowserEncryptedDM: two people in two browser contexts start an
// end-to-end encrypted DM from the new-DM dialog; each reads the other's
// message, the server's history holds only envelopes, and the safety
// numbers both see are equal.
func TestBrowserEncryptedDM(t *testing.T) {
	s := stack(t, "local")
	browser := newBrowser(t)
	ana := newPerson(t, browser, s.GatewayURL, "ana", "Ana Lima")
	bruno := newPerson(t, browser, s.GatewayURL, "bruno", "Bruno Reis")
	ana.register()
	bruno.register()

	ana.do("start an encrypted DM with Bruno",
		chromedp.Click(chromedp.CSS("#new-dm-btn")),
		chromedp.WaitVisible(chromedp.CSS("#user-name")),
		chromedp.SendKeys(chromedp.CSS("#user-name"), bruno.Username),
		chromedp.Click(chromedp.CSS("#user-encrypted")),
	)
	ana.waitFor("the encrypted box ticked", `document.getElementById("user-encrypted").checked`)
	ana.do("start the chat", chromedp.Click(chromedp.CSS("#user-submit")))
	ana.waitFor("the encrypted DM open", `document.getElementById("chat-title").textContent.includes("🔐 Bruno Reis") && !document.getElementById("e2ee-banner").hidden`)
	secret := "Só entre nós: " + randomName("")
	ana.send(secret)
	ana.waitFor("her encrypted message confirmed", confirmed(secret))

	bruno.openRoomNamed("🔐 Ana Lima")
	bruno.waitFor("Ana's message, decrypted", hasMessage(secret))
	reply := "Combinado. " + randomName("")
	bruno.send(reply)
	ana.waitFor("Bruno's reply, decrypted", hasMessage(reply))

	// The server holds envelopes only.
	c := client.New(s.GatewayURL)
	if _, err := c.Login(context.Background(), ana.Username, ana.Password); err != nil {
		t.Fatal(err)
	}
	rooms, err := c.Rooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var dm api.Room
	for _, r := range rooms {
		if r.Encrypted {
			dm = r
		}
	}
	hist, err := c.EventsAfter(context.Background(), dm.ID, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	messages := 0
	for _, e := range hist.Events {
		if e.Type == api.EventMessage {
			messages++
			if e.Text != "" || e.E2EE == nil {
				t.Errorf("the server holds a message of the encrypted DM as %+v; want an envelope and no text", e)
			}
		}
	}
	if messages != 2 {
		t.Errorf("the encrypted DM holds %d messages, want 2", messages)
	}

	digits := regexp.MustCompile(`\d{5}( \d{5}){5}`)
	number := func(p *person) string {
		p.do("show the safety number", chromedp.Click(chromedp.CSS("#safety-btn")))
		p.waitFor("the safety number", `/\d{5}( \d{5}){5}/.test(document.getElementById("e2ee-banner").textContent)`)
		return digits.FindString(js[string](p, `document.getElementById("e2ee-banner").textContent`))
	}
	na, nb := number(ana), number(bruno)
	if na == "" || na != nb {
		t.Errorf("safety numbers: Ana sees %q, Bruno %q; want the same", na, nb)
	}
	ana.shot("e2ee-ana-safety-number")
	for _, p := range []*person{ana, bruno} {
		p.checkErrors()
	}
	fmt.Fprintln(testLog{t}, "safety number:", na)
}
