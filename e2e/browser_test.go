package e2e

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowserChat drives the web client in real headless Chromium: two
// people in two browser contexts sign up, meet in a public room and a DM,
// write both ways, see each other typing and online, reload and keep their
// history; one closes the tab, misses messages, comes back and finds them.
// Screenshots land in e2e/artifacts/.
func TestBrowserChat(t *testing.T) {
	s := stack(t, "local")
	browser := newBrowser(t)
	base := s.GatewayURL

	ana := newPerson(t, browser, base, "ana", "Ana Lima")
	bruno := newPerson(t, browser, base, "bruno", "Bruno Reis")
	ana.register()
	bruno.register()
	ana.shot("01-ana-welcome")

	// Ana creates a public room.
	room := randomName("lounge-")
	ana.do("create room "+room,
		chromedp.Click(chromedp.CSS("#new-room-btn")),
		chromedp.WaitVisible(chromedp.CSS("#room-name")),
		chromedp.SendKeys(chromedp.CSS("#room-name"), room),
		chromedp.Click(chromedp.CSS(`#room-form button[type="submit"]`)),
	)
	ana.waitFor("the new room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(room)))

	// Bruno finds it among the public rooms and joins.
	bruno.do("browse public rooms", chromedp.Click(chromedp.CSS("#browse-btn")))
	joinBtn := fmt.Sprintf(`#browse-list button[aria-label=%s]`, quote("Join "+room))
	bruno.do("join "+room, chromedp.WaitVisible(chromedp.CSS(joinBtn)), chromedp.Click(chromedp.CSS(joinBtn)))
	bruno.waitFor("the room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(room)))
	ana.waitFor("Bruno's join shown", `[...document.querySelectorAll("#messages .sys")].some(e => e.textContent.includes("Bruno Reis joined"))`)

	// Ana writes; her message is pending, then confirmed by its ack;
	// Bruno sees it, with the link made clickable and safe.
	hello := "Bom dia Bruno! The plan is at https://example.org/plan?x=1."
	ana.send(hello)
	ana.waitFor("her message confirmed", confirmed(hello))
	bruno.waitFor("Ana's message", hasMessage(hello))
	link := js[map[string]string](bruno, `(() => { const a = [...document.querySelectorAll("#messages .msg .t a")].pop(); return a ? {href: a.href, rel: a.rel, target: a.target, text: a.textContent} : {}; })()`)
	if link["href"] != "https://example.org/plan?x=1" || link["rel"] != "noopener noreferrer nofollow" || link["target"] != "_blank" {
		t.Errorf("link rendered as %v; want https://example.org/plan?x=1 with rel noopener, new tab, trailing dot left out", link)
	}

	// Bruno types: Ana sees him typing, then his answer.
	bruno.do("start typing", chromedp.Focus(chromedp.CSS("#composer")), chromedp.SendKeys(chromedp.CSS("#composer"), "Bom dia"))
	ana.waitFor("Bruno typing", `document.getElementById("typing").textContent.includes("Bruno Reis is typing")`)
	ana.shot("02-ana-sees-typing")
	reply := "Bom dia, Ana! Looks great.\nSee you at 10."
	bruno.do("finish the line", chromedp.SendKeys(chromedp.CSS("#composer"), ", Ana! Looks great."))
	// Shift+Enter is a new line, not a send.
	bruno.do("shift+enter", chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierShift)))
	bruno.do("second line and Enter", chromedp.SendKeys(chromedp.CSS("#composer"), "See you at 10."), enter(0))
	ana.waitFor("Bruno's two-line reply", hasMessage(reply))
	bruno.waitFor("his reply confirmed", confirmed(reply))

	// Text is never HTML.
	evil := `<img src=x onerror="document.title='pwned'"><b>bold?</b>`
	bruno.send(evil)
	ana.waitFor("the markup shown as text", hasMessage(evil))
	if n := js[int](ana, `document.querySelectorAll("#messages img, #messages b").length`); n != 0 {
		t.Errorf("message markup became %d elements; text must stay text", n)
	}

	// Ana edits her message; Bruno sees the new text marked edited.
	edited := "Bom dia Bruno! Plan moved to https://example.org/plan2"
	ana.do("edit the last message with the up arrow",
		chromedp.Focus(chromedp.CSS("#composer")),
		chromedp.KeyEvent(kb.ArrowUp),
		chromedp.WaitVisible(chromedp.CSS("textarea.edit-box")),
	)
	ana.do("replace the text", chromedp.Evaluate[chromedp.Void](`document.querySelector("textarea.edit-box").select()`),
		chromedp.SendKeys(chromedp.CSS("textarea.edit-box"), edited), enter(0))
	bruno.waitFor("the edited text", hasMessage(edited)+` && [...document.querySelectorAll("#messages .edited")].length > 0`)
	ana.waitFor("no badge on the room she is reading", ana.unreadOf(room)+` === "0"`)
	ana.shot("03-ana-room")
	bruno.shot("04-bruno-room")

	// A direct message: Ana starts it by Bruno's username.
	ana.do("new DM", chromedp.Click(chromedp.CSS("#new-dm-btn")), chromedp.WaitVisible(chromedp.CSS("#user-name")),
		chromedp.SendKeys(chromedp.CSS("#user-name"), bruno.Username), chromedp.Click(chromedp.CSS("#user-submit")))
	ana.waitFor("the DM open", `document.getElementById("chat-title").textContent.includes("Bruno Reis")`)
	ana.waitFor("Bruno shown online", `document.getElementById("chat-sub").dataset.presence === "online"`)
	psst := "psst — lunch after the meeting?"
	ana.send(psst)
	ana.waitFor("DM confirmed", confirmed(psst))
	bruno.waitFor("an unread DM from Ana", bruno.unreadOf("Ana Lima")+` === "1"`)
	bruno.shot("05-bruno-unread-dm")
	bruno.openRoomNamed("Ana Lima")
	bruno.waitFor("the DM", hasMessage(psst))
	bruno.waitFor("the badge cleared", bruno.unreadOf("Ana Lima")+` === "0"`)
	bruno.send("Sim! 12:30?")
	ana.waitFor("Bruno's DM answer", hasMessage("Sim! 12:30?"))
	ana.shot("06-ana-dm")

	// Reload: still logged in (refresh token of this tab), same room,
	// history back from the server.
	ana.do("reload", chromedp.Reload())
	ana.waitOnline()
	ana.waitFor("the DM history after reload", hasMessage(psst)+" && "+hasMessage("Sim! 12:30?"))
	ana.openRoomNamed(room)
	ana.waitFor("the room history after reload", hasMessage(edited)+" && "+hasMessage(reply)+" && "+hasMessage(evil))

	// Bruno's connection drops and the server cannot be reached for a
	// while: he sees it, writes anyway (queued), and when the socket is
	// back, resume brings what Ana wrote meanwhile, once and in order, and
	// his queued message goes out with its original client_id.
	bruno.openRoomNamed(room)
	bruno.blockSocket(true)
	if n := bruno.dropSockets(); n != 1 {
		t.Fatalf("closed %d WebSockets of Bruno's page; want 1", n)
	}
	bruno.waitFor("the connection shown as lost", `document.body.dataset.conn === "waiting" && !document.getElementById("offline-banner").hidden`)
	during := []string{"Are you still there?", "The deploy is green."}
	for _, m := range during {
		ana.send(m)
		ana.waitFor("confirmed "+m, confirmed(m))
	}
	queued := "Sorry, my train went into a tunnel."
	bruno.send(queued)
	bruno.waitFor("his message queued", `[...document.querySelectorAll("#messages .msg.mine")].some(e => e.dataset.state === "queued")`)
	bruno.shot("07-bruno-offline")
	if got := js[bool](bruno, hasMessage(during[0])); got {
		t.Fatal("Bruno saw a message while his socket was down: the test did not cut him off")
	}
	bruno.blockSocket(false)
	// "Retry now" skips the rest of the backoff (a reconnect may be under
	// way already, which the button then leaves alone).
	js[chromedp.Void](bruno, `document.getElementById("conn-retry").click()`)
	bruno.waitOnline()
	bruno.waitFor("what he missed", hasMessage(during[0])+" && "+hasMessage(during[1]))
	bruno.waitFor("his queued message confirmed", confirmed(queued))
	ana.waitFor("Bruno's queued message", hasMessage(queued))
	for _, who := range []*person{ana, bruno} {
		texts := who.messageTexts()
		seen := map[string]int{}
		for _, x := range texts {
			seen[x]++
		}
		for _, m := range append(during, queued) {
			if seen[m] != 1 {
				t.Errorf("%s's room shows %q %d times; want once (texts %q)", who.Display, m, seen[m], texts)
			}
		}
	}

	// Bruno closes his tab: he goes offline for Ana, and misses what
	// follows.
	bruno.closeTab()
	ana.openRoomNamed("Bruno Reis")
	ana.waitFor("Bruno shown offline", `document.getElementById("chat-sub").dataset.presence === "offline"`)
	missedDM := "Are you there? Call me when you see this."
	ana.send(missedDM)
	ana.openRoomNamed(room)
	missed := []string{"Agenda: 1. coffee", "2. deploy the thing", "3. celebrate 🎉"}
	for _, m := range missed {
		ana.send(m)
		ana.waitFor("confirmed "+m, confirmed(m))
	}

	// He comes back in a new tab, logs in, finds both unread badges and
	// every message in order.
	bruno.openTab()
	bruno.login()
	bruno.waitFor("3 unread in the room", bruno.unreadOf(room)+` === "3"`)
	bruno.waitFor("1 unread DM", bruno.unreadOf("Ana Lima")+` === "1"`)
	bruno.shot("08-bruno-back-unread")
	bruno.openRoomNamed(room)
	bruno.waitFor("the missed messages", hasMessage(missed[2]))
	bruno.waitFor("the room's badge cleared once read", bruno.unreadOf(room)+` === "0"`)
	texts := bruno.messageTexts()
	if len(texts) < 3 || texts[len(texts)-3] != missed[0] || texts[len(texts)-2] != missed[1] || texts[len(texts)-1] != missed[2] {
		t.Errorf("Bruno's room ends with %q; want %q in order", texts, missed)
	}
	bruno.openRoomNamed("Ana Lima")
	bruno.waitFor("the missed DM", hasMessage(missedDM))
	bruno.waitFor("the DM badge cleared once read", bruno.unreadOf("Ana Lima")+` === "0"`)
	ana.openRoomNamed("Bruno Reis")
	ana.waitFor("Bruno online again", `document.getElementById("chat-sub").dataset.presence === "online"`)

	// The same page on a phone, and in the dark.
	bruno.do("phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	bruno.shot("09-bruno-phone-dm")
	bruno.do("back to the list", chromedp.Click(chromedp.CSS("#back-btn")))
	bruno.shot("10-bruno-phone-list")
	bruno.do("desktop size", chromedp.EmulateViewport(1280, 800))
	bruno.darkMode(true)
	bruno.openRoomNamed(room)
	bruno.shot("11-bruno-dark-room")

	// Into a private room only by accepting: Ana invites Bruno, who finds
	// the invitation in the browse dialog and accepts it.
	secret := randomName("secret-")
	ana.do("create private room "+secret,
		chromedp.Click(chromedp.CSS("#new-room-btn")),
		chromedp.WaitVisible(chromedp.CSS("#room-name")),
		chromedp.SendKeys(chromedp.CSS("#room-name"), secret),
		chromedp.Click(chromedp.CSS(`#dlg-room input[name=kind][value=private]`)),
		chromedp.Click(chromedp.CSS(`#room-form button[type="submit"]`)),
	)
	ana.waitFor("the private room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(secret)))
	ana.do("invite Bruno", chromedp.Click(chromedp.CSS("#add-member-btn")), chromedp.WaitVisible(chromedp.CSS("#user-name")),
		chromedp.SendKeys(chromedp.CSS("#user-name"), bruno.Username), chromedp.Click(chromedp.CSS("#user-submit")))
	ana.waitFor("the invitation confirmed", `[...document.querySelectorAll(".toast")].some(e => e.textContent.includes("Bruno Reis was invited"))`)
	bruno.do("browse rooms", chromedp.Click(chromedp.CSS("#browse-btn")))
	accept := fmt.Sprintf(`#invite-list button[aria-label=%s]`, quote("Accept "+secret))
	bruno.do("see the invitation", chromedp.WaitVisible(chromedp.CSS(accept)))
	bruno.shot("12-bruno-invitation")
	bruno.do("accept "+secret, chromedp.Click(chromedp.CSS(accept)))
	bruno.waitFor("the private room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(secret)))
	ana.waitFor("Bruno's join shown", `[...document.querySelectorAll("#messages .sys")].some(e => e.textContent.includes("Bruno Reis joined"))`)

	ana.checkErrors()
	bruno.checkErrors()
}
