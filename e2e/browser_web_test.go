package e2e

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"github.com/papochat/papo/api/client"
)

// The web client's issue-19 behaviours, each proven in headless Chromium
// against the real stack: first-unread landing, staying signed in,
// notifications, the phone paths and the 4,000-character limit.
// Screenshots land in e2e/artifacts/ (web-*.png; docs/web.md shows them).

// restClient logs a person in over REST (a session of its own), for
// writing many messages fast.
func restClient(t *testing.T, base string, p *person) *client.Client {
	t.Helper()
	c := client.New(base)
	if _, err := c.Login(context.Background(), p.Username, p.Password); err != nil {
		t.Fatalf("%s: REST login: %v", p.Display, err)
	}
	return c
}

// currentRoomID is the id of the room open in p's page.
func (p *person) currentRoomID() string {
	p.t.Helper()
	return js[string](p, `decodeURIComponent(location.pathname.replace(/^\/r\//, ""))`)
}

// createRoom creates a public room through the dialog and returns its id.
func (p *person) createRoom(name string) string {
	p.t.Helper()
	p.do("create room "+name,
		chromedp.Click(chromedp.CSS("#new-room-btn")),
		chromedp.WaitVisible(chromedp.CSS("#room-name")),
		chromedp.SendKeys(chromedp.CSS("#room-name"), name),
		chromedp.Click(chromedp.CSS(`#room-form button[type="submit"]`)),
	)
	p.waitFor("the new room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(name)))
	return p.currentRoomID()
}

// joinRoom joins a public room through the browse dialog.
func (p *person) joinRoom(name string) {
	p.t.Helper()
	p.do("browse public rooms", chromedp.Click(chromedp.CSS("#browse-btn")))
	btn := fmt.Sprintf(`#browse-list button[aria-label=%s]`, quote("Join "+name))
	p.do("join "+name, chromedp.WaitVisible(chromedp.CSS(btn)), chromedp.Click(chromedp.CSS(btn)))
	p.waitFor("the room open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(name)))
}

// inView is a predicate: the element matched by sel is inside the
// message scroller's visible area.
func inView(sel string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false;
		const v = document.getElementById("scroller").getBoundingClientRect(), b = e.getBoundingClientRect();
		return b.top >= v.top - 1 && b.bottom <= v.bottom + 1; })()`, quote(sel))
}

// msgSel selects the message whose text is text.
func msgSel(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg")].find(e => e.querySelector(".t") && e.querySelector(".t").textContent === %s)`, quote(text))
}

func msgInView(text string) string {
	return fmt.Sprintf(`(() => { const e = %s; if (!e) return false;
		const v = document.getElementById("scroller").getBoundingClientRect(), b = e.getBoundingClientRect();
		return b.bottom > v.top && b.top < v.bottom; })()`, msgSel(text))
}

func (p *person) focusEmulation() {
	p.t.Helper()
	if _, err := chromedp.Call(p.ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		p.t.Fatalf("%s: focus emulation: %v", p.Display, err)
	}
}

func phone(p *person) {
	p.do("phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
}

func desktop(p *person) {
	p.do("desktop size", chromedp.EmulateViewport(1280, 800))
}

// TestBrowserFirstUnread: a busy room opens at its first unread message
// with the divider in view, not at the bottom; only what has been on
// screen counts as read; "Jump to first unread" and "Mark all read" work.
func TestBrowserFirstUnread(t *testing.T) {
	s := stack(t, "local")
	b := newBrowser(t)
	base := s.GatewayURL
	ana := newPerson(t, b, base, "ana", "Ana Lima")
	bruno := newPerson(t, b, base, "bruno", "Bruno Reis")
	ana.register()
	bruno.register()
	bruno.focusEmulation()
	room := randomName("general-")
	roomID := ana.createRoom(room)
	bruno.joinRoom(room)
	bruno.send("Bom dia!")
	bruno.waitFor("his message confirmed", confirmed("Bom dia!"))
	js[chromedp.Void](bruno, `document.getElementById("back-btn").click()`)

	// Ana writes 60 messages while Bruno looks elsewhere.
	c := restClient(t, base, ana)
	const n = 60
	for i := 1; i <= n; i++ {
		if err := c.Send(context.Background(), roomID, fmt.Sprintf("m-%02d", i), fmt.Sprintf("Message number %02d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	bruno.waitFor("60 unread", bruno.unreadOf(room)+` === "60"`)
	bruno.waitFor("the preview of the last message", fmt.Sprintf(`[...document.querySelectorAll(".room-item")].some(b => b.querySelector(".room-name").textContent === %s && b.querySelector(".room-preview") && b.querySelector(".room-preview").textContent === "Ana Lima: Message number 60")`, quote(room)))

	bruno.openRoomNamed(room)
	bruno.waitFor("the divider in view", inView("#messages .unread-mark"))
	bruno.waitFor("the first unread in view", msgInView("Message number 01"))
	if js[bool](bruno, msgInView("Message number 60")) {
		t.Error("the last message is on screen at landing; the room should open at the first unread")
	}
	bruno.waitFor("the unread bar", `!document.getElementById("unread-bar").hidden`)
	// What is on screen is read; what is below is not.
	bruno.waitFor("the read marker past what is on screen", bruno.unreadOf(room)+` !== "60"`)
	left := js[string](bruno, bruno.unreadOf(room))
	if left == "0" {
		t.Fatal("the badge dropped to 0 though most messages were never on screen")
	}
	rooms, err := restClient(t, base, bruno).Rooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if r.ID == roomID && r.ReadSeq >= r.LastSeq {
			t.Errorf("server read_seq %d of last %d: marked read without being seen", r.ReadSeq, r.LastSeq)
		}
	}
	bruno.shot("web-01-first-unread-desktop")
	checkContrast(t, bruno)

	// Down the page (not to the end) and back: "Jump to first unread"
	// brings the divider back.
	js[chromedp.Void](bruno, `document.getElementById("scroller").scrollTop += 1000`)
	bruno.waitFor("the divider out of view", `!`+inView("#messages .unread-mark"))
	bruno.do("jump to first unread", chromedp.Click(chromedp.CSS("#unread-jump")))
	bruno.waitFor("the divider in view again", inView("#messages .unread-mark"))

	// Mark all read: badge, bar and the server agree.
	bruno.do("mark all read", chromedp.Click(chromedp.CSS("#unread-read")))
	bruno.waitFor("the badge cleared", bruno.unreadOf(room)+` === "0" && document.getElementById("unread-bar").hidden`)
	bc := restClient(t, base, bruno)
	eventually(t, 10*time.Second, "the server to count no unread in "+room, func() bool {
		rooms, err := bc.Rooms(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rooms {
			if r.ID == roomID {
				return r.Unread == 0
			}
		}
		return false
	})

	// The same landing on a phone.
	for i := 1; i <= 30; i++ {
		if err := c.Send(context.Background(), roomID, fmt.Sprintf("p-%02d", i), fmt.Sprintf("Phone message %02d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	phone(bruno)
	js[chromedp.Void](bruno, `document.getElementById("back-btn").click()`)
	bruno.waitFor("30 unread", bruno.unreadOf(room)+` === "30"`)
	bruno.shot("web-02-sidebar-previews-phone")
	bruno.openRoomNamed(room)
	bruno.waitFor("the divider in view on the phone", inView("#messages .unread-mark")+" && "+msgInView("Phone message 01"))
	bruno.shot("web-03-first-unread-phone")
	desktop(bruno)
	ana.checkErrors()
	bruno.checkErrors()
}

// checkContrast: author names and section headers are at least 4.5:1
// against what is behind them, in the light theme.
func checkContrast(t *testing.T, p *person) {
	t.Helper()
	got := js[[]string](p, `(() => {
		const rgb = (s) => s.match(/[\d.]+/g).slice(0, 3).map(Number);
		const lum = (c) => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
		const bg = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor; if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return rgb(c); } return [255, 255, 255]; };
		const bad = [];
		for (const e of document.querySelectorAll(".author, .section-head h2, .room-preview, .meta time")) {
			const a = lum(rgb(getComputedStyle(e).color)), b = lum(bg(e));
			const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
			if (ratio < 4.5) bad.push(e.className + " " + e.textContent + " " + ratio.toFixed(2));
		}
		return bad; })()`)
	if len(got) > 0 {
		t.Errorf("text under 4.5:1 contrast: %q", got)
	}
}

// TestBrowserStaysSignedIn: a second tab and a restarted browser are still
// signed in (the refresh token in an HttpOnly cookie no script can read);
// logging out in one tab logs out every tab, and the restarted browser.
func TestBrowserStaysSignedIn(t *testing.T) {
	s := stack(t, "local")
	base := s.GatewayURL
	dir := t.TempDir()
	b1, close1 := newBrowserAt(t, dir)
	t.Cleanup(close1)
	ana := &person{t: t, browser: b1, base: base, Username: randomName("ana"), Display: "Ana Lima"}
	ana.Password = "pw-" + ana.Username
	ana.ctx, ana.cancel = chromedp.NewContext(b1) // the profile's own context: what persists
	ana.watch()
	ana.register()
	ana.waitFor("focus on a conversation or the way to one", `document.activeElement && (document.activeElement.classList.contains("room-item") || document.activeElement.id === "empty-browse")`)
	if leak := js[string](ana, `document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)`); strings.Contains(leak, "refresh") && !strings.Contains(leak, `"papo.session":"1"`) || strings.Contains(leak, "papo_refresh") {
		t.Errorf("the refresh token is within the page's reach: %s", leak)
	}

	// A second tab of the same browser: signed in, no form.
	tab2 := &person{t: t, browser: b1, base: base, Username: ana.Username, Display: "Ana (tab 2)", Password: ana.Password}
	tab2.ctx, tab2.cancel = chromedp.NewContext(ana.ctx)
	tab2.watch()
	tab2.do("open papo in a second tab", chromedp.Navigate(base))
	tab2.waitOnline()
	tab2.shot("web-04-second-tab")

	// Quit the browser and start it again on the same profile.
	close1()
	b2, close2 := newBrowserAt(t, dir)
	t.Cleanup(close2)
	again := &person{t: t, browser: b2, base: base, Username: ana.Username, Display: "Ana (restarted)", Password: ana.Password}
	again.ctx, again.cancel = chromedp.NewContext(b2)
	again.watch()
	again.do("open papo after the restart", chromedp.Navigate(base))
	again.waitOnline()

	// Logout in one tab ends the session in the other too.
	other := &person{t: t, browser: b2, base: base, Username: ana.Username, Display: "Ana (other tab)", Password: ana.Password}
	other.ctx, other.cancel = chromedp.NewContext(again.ctx)
	other.watch()
	other.do("open a second tab", chromedp.Navigate(base))
	other.waitOnline()
	again.do("log out", chromedp.Click(chromedp.CSS("#logout-btn")))
	again.waitFor("the log-in screen", `document.body.dataset.view === "auth"`)
	other.waitFor("the other tab logged out too", `document.body.dataset.view === "auth"`)
	other.do("reload", chromedp.Reload())
	other.waitFor("still logged out after a reload", `document.body.dataset.view === "auth" && !document.getElementById("auth-username").closest("[hidden]")`)
	for _, p := range []*person{ana, tab2, again, other} {
		p.checkErrors()
	}
}

// TestBrowserNotifications: a message in a room not in view notifies
// (after permission, asked from a banner, never on load) and moves its
// room to the top with a preview; a message in the room in view does
// not; a room set to "Off" stays silent.
func TestBrowserNotifications(t *testing.T) {
	s := stack(t, "local")
	b := newBrowser(t)
	base := s.GatewayURL
	ana := newPerson(t, b, base, "ana", "Ana Lima")
	bruno := newPerson(t, b, base, "bruno", "Bruno Reis")
	ana.register()
	bruno.register()
	bruno.focusEmulation()
	if js[bool](bruno, `!document.getElementById("notify-prompt").hidden`) {
		t.Error("the notification banner shows on load; it should wait for a message that would notify")
	}
	// Record notifications the page makes.
	js[chromedp.Void](bruno, `window.__notes = []; window.Notification = new Proxy(window.Notification, {
		construct(target, args) { const n = Reflect.construct(target, args); window.__notes.push({title: args[0], body: args[1].body, tag: args[1].tag}); (window.__noteObjs ||= []).push(n); return n; },
		get(target, k) { const v = target[k]; return typeof v === "function" ? v.bind(target) : v; } })`)

	lounge := randomName("lounge-")
	quiet := randomName("quiet-")
	loungeID := ana.createRoom(lounge)
	quietID := ana.createRoom(quiet)
	bruno.joinRoom(quiet)
	bruno.joinRoom(lounge) // in view from now on
	c := restClient(t, base, ana)

	// The first message that would notify asks (a banner, not a prompt).
	if err := c.Send(context.Background(), quietID, "q-1", "Anyone in quiet?"); err != nil {
		t.Fatal(err)
	}
	bruno.waitFor("the permission banner", `!document.getElementById("notify-prompt").hidden`)
	bruno.shot("web-05-notify-banner")
	if _, err := chromedp.CallBrowser(bruno.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: browser.PermissionSettingGranted,
		Origin: base, BrowserContextID: chromedp.FromContext(bruno.ctx).BrowserContextID,
	}); err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
	bruno.do("turn notifications on", chromedp.Click(chromedp.CSS("#notify-on")))
	bruno.waitFor("the banner gone and permission granted", `document.getElementById("notify-prompt").hidden && Notification.permission === "granted"`)

	// A message in the other room: a notification, and the room on top
	// with its preview.
	if err := c.Send(context.Background(), quietID, "q-2", "Psst, over here"); err != nil {
		t.Fatal(err)
	}
	bruno.waitFor("a notification for quiet", fmt.Sprintf(`window.__notes.some(n => n.title === %s && n.body === "Psst, over here" && n.tag === %s)`, quote("Ana Lima in #"+quiet), quote(quietID)))
	bruno.waitFor("quiet first, with its preview", fmt.Sprintf(`(() => { const b = document.querySelector("#room-list .room-item"); return b.querySelector(".room-name").textContent === %s && b.querySelector(".room-preview").textContent === "Ana Lima: Psst, over here"; })()`, quote(quiet)))
	bruno.shot("web-06-notified-desktop")
	// Clicking it opens the room.
	js[chromedp.Void](bruno, `window.__noteObjs.find(n => n.body === "Psst, over here").onclick()`)
	bruno.waitFor("quiet opened by the notification", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(quiet)))
	bruno.openRoomNamed(lounge)
	phone(bruno)
	js[chromedp.Void](bruno, `document.getElementById("back-btn").click()`)
	bruno.shot("web-12-notified-list-phone")
	desktop(bruno)
	bruno.openRoomNamed(lounge)

	// A message in the room in view: shown, not notified.
	if err := c.Send(context.Background(), loungeID, "l-1", "Hello lounge"); err != nil {
		t.Fatal(err)
	}
	bruno.waitFor("the lounge message", hasMessage("Hello lounge"))
	// quiet set to Off: no notification for it (the server is told too).
	bruno.openRoomNamed(quiet)
	bruno.do("notifications off for quiet", chromedp.SetValue(chromedp.CSS("#notify-mode"), "none"))
	js[chromedp.Void](bruno, `document.getElementById("notify-mode").dispatchEvent(new Event("change"))`)
	bruno.openRoomNamed(lounge)
	if err := c.Send(context.Background(), quietID, "q-3", "Muted one"); err != nil {
		t.Fatal(err)
	}
	// Then one to lounge out of view, which must notify: by then the muted
	// one has been handled (events of one person arrive in order per room,
	// and the two rooms' notes are compared after both arrived).
	js[chromedp.Void](bruno, `document.getElementById("back-btn").click()`)
	if err := c.Send(context.Background(), loungeID, "l-2", "Lounge while away"); err != nil {
		t.Fatal(err)
	}
	bruno.waitFor("the muted message arrived", fmt.Sprintf(`[...document.querySelectorAll(".room-item")].some(b => b.querySelector(".room-name").textContent === %s && b.querySelector(".room-preview").textContent === "Ana Lima: Muted one")`, quote(quiet)))
	bruno.waitFor("a notification for lounge", `window.__notes.some(n => n.body === "Lounge while away")`)
	notes := js[[]map[string]string](bruno, `window.__notes`)
	for _, n := range notes {
		if n["body"] == "Hello lounge" || n["body"] == "Muted one" {
			t.Errorf("notified %q: the room was in view or set to Off", n["body"])
		}
	}

	// Browse sorts names as people count: room-2 before room-10.
	prefix := randomName("num-")
	for _, suffix := range []string{"10", "2"} {
		ana.createRoom(prefix + "-" + suffix)
	}
	bruno.do("browse", chromedp.Click(chromedp.CSS("#browse-btn")), chromedp.WaitVisible(chromedp.CSS("#browse-filter")),
		chromedp.SendKeys(chromedp.CSS("#browse-filter"), prefix))
	bruno.waitFor("numeric order", fmt.Sprintf(`(() => { const n = [...document.querySelectorAll("#browse-list .browse-name")].map(e => e.textContent); return n.length === 2 && n[0] === %s && n[1] === %s; })()`, quote("# "+prefix+"-2"), quote("# "+prefix+"-10")))
	// …and says how many members each has (ana, who made them).
	bruno.waitFor("member counts", `[...document.querySelectorAll("#browse-list .browse-count")].map(e => e.textContent).join("|") === "1 member|1 member"`)
	ana.checkErrors()
	bruno.checkErrors()
}

// TestBrowserPhoneAndLimits: on a 390×844 touch screen the composer keeps
// focus after Send, own messages have a touch path to Edit and Delete with
// 44 px targets, and the header leaves the title its room; everywhere,
// text over 4,000 characters is never cut and never sent, and a refused
// send can be edited.
func TestBrowserPhoneAndLimits(t *testing.T) {
	s := stack(t, "local")
	b := newBrowser(t)
	base := s.GatewayURL
	ana := newPerson(t, b, base, "ana", "Ana Lima")
	bruno := newPerson(t, b, base, "bruno", "Bruno Reis")
	ana.register()
	bruno.register()
	room := randomName("general-")
	ana.createRoom(room)
	phone(ana)

	// Send by tapping the button: the composer (and the keyboard) stay.
	ana.do("type and tap Send", chromedp.Focus(chromedp.CSS("#composer")), chromedp.SendKeys(chromedp.CSS("#composer"), "Tapped send"),
		chromedp.Click(chromedp.CSS("#send-btn")))
	ana.waitFor("sent", confirmed("Tapped send"))
	if id := js[string](ana, `document.activeElement.id`); id != "composer" {
		t.Errorf("focus after tapping Send is on %q; want the composer", id)
	}
	ana.send("Second line of planning")
	ana.waitFor("confirmed", confirmed("Second line of planning"))

	// The header: the title is not squeezed by the room's buttons.
	w := js[map[string]float64](ana, `(() => { const t = document.getElementById("chat-title"); return {shown: t.clientWidth, needs: t.scrollWidth, head: t.closest(".chat-head").clientWidth}; })()`)
	if w["needs"] > w["shown"] || w["shown"] < w["head"]*0.55 {
		t.Errorf("title %v: cut or narrower than 55%% of the header", w)
	}
	ana.do("open the room menu", chromedp.Click(chromedp.CSS("#room-menu-btn")), chromedp.WaitVisible(chromedp.CSS("#add-member-btn")))
	ana.shot("web-07-room-menu-phone")
	ana.do("close the room menu", chromedp.Click(chromedp.CSS("#room-menu-btn")))

	// Touch path: a tap on an own message shows Edit and Delete, 44 px.
	js[chromedp.Void](ana, msgSel("Tapped send")+`.querySelector(".bubble").click()`)
	ana.waitFor("the actions shown", msgSel("Tapped send")+`.classList.contains("open")`)
	size := js[map[string]float64](ana, `(() => { const r = `+msgSel("Tapped send")+`.querySelector(".act").getBoundingClientRect(); return {w: r.width, h: r.height}; })()`)
	if size["w"] < 44 || size["h"] < 44 {
		t.Errorf("Edit is %v px; want at least 44×44", size)
	}
	ana.shot("web-08-touch-actions-phone")
	js[chromedp.Void](ana, msgSel("Tapped send")+`.querySelector(".act").click()`)
	ana.do("edit by touch", chromedp.WaitVisible(chromedp.CSS("textarea.edit-box")))
	js[chromedp.Void](ana, `document.querySelector("textarea.edit-box").value = "Tapped send, edited"`)
	ana.do("save", chromedp.Click(chromedp.CSS(".editor .primary")))
	ana.waitFor("the edit", hasMessage("Tapped send, edited"))
	if n := js[int](ana, `[...document.querySelectorAll("#messages .act")].filter(b => b.tabIndex >= 0).length`); n != 0 {
		t.Errorf("%d message actions are Tab stops; they are reached with the arrow keys", n)
	}

	// 4,000 characters: a longer text stays whole, Send is blocked, and
	// the counter says by how much.
	long := strings.Repeat("a", 5002)
	js[chromedp.Void](ana, fmt.Sprintf(`(() => { const c = document.getElementById("composer"); c.focus(); document.execCommand("insertText", false, %s); })()`, quote(long)))
	ana.waitFor("the counter over the limit", `document.getElementById("counter").classList.contains("over") && document.getElementById("counter").textContent.includes("1,002 over") && document.getElementById("send-btn").disabled`)
	if n := js[int](ana, `[...document.getElementById("composer").value].length`); n != 5002 {
		t.Fatalf("the composer holds %d characters of a 5,002-character paste; nothing may be cut", n)
	}
	ana.shot("web-09-over-limit-phone")
	desktop(ana)
	ana.shot("web-11-over-limit-desktop")
	phone(ana)
	before := len(ana.messageTexts())
	ana.do("Enter over the limit", enter(0))
	if got := len(ana.messageTexts()); got != before {
		t.Errorf("a 5,002-character text was sent (%d → %d messages)", before, got)
	}
	js[chromedp.Void](ana, `(() => { const c = document.getElementById("composer"); c.value = [...c.value].slice(0, 4000).join(""); c.dispatchEvent(new Event("input")); })()`)
	ana.waitFor("Send allowed at 4,000", `!document.getElementById("send-btn").disabled && !document.getElementById("counter").classList.contains("over")`)
	ana.do("send 4,000", enter(0))
	ana.waitFor("4,000 characters confirmed", confirmed(strings.Repeat("a", 4000)))

	// A refused send (a bidi override the server refuses) says why in
	// words and can be taken back to edit.
	refused := "Look: \u202Eevil"
	js[chromedp.Void](ana, fmt.Sprintf(`(() => { const c = document.getElementById("composer"); c.value = %s; c.dispatchEvent(new Event("input")); })()`, quote(refused)))
	ana.do("send the refused text", enter(0))
	ana.waitFor("not sent, in words, with Edit and no Retry", `(() => { const s = document.querySelector("#messages .msg[data-state=failed] .status"); return s && s.textContent.includes("cannot be sent as it is") && [...s.querySelectorAll("button")].map(b => b.textContent).join() === "Edit,Discard"; })()`)
	ana.shot("web-10-refused-phone")
	js[chromedp.Void](ana, `[...document.querySelectorAll("#messages .msg[data-state=failed] .status button")].find(b => b.textContent === "Edit").click()`)
	ana.waitFor("the text back in the composer", fmt.Sprintf(`document.getElementById("composer").value === %s && document.activeElement.id === "composer" && !document.querySelector("#messages .msg[data-state=failed]")`, quote(refused)))

	// Follow-on messages carry their time (shown on hover or focus).
	if !js[bool](ana, `[...document.querySelectorAll("#messages .msg.grouped")].every(m => m.querySelector("time.hover-time"))`) {
		t.Error("a follow-on message has no time")
	}

	// Peers' presence is not claimed while offline.
	desktop(bruno)
	bruno.do("new DM", chromedp.Click(chromedp.CSS("#new-dm-btn")), chromedp.WaitVisible(chromedp.CSS("#user-name")),
		chromedp.SendKeys(chromedp.CSS("#user-name"), ana.Username), chromedp.Click(chromedp.CSS("#user-submit")))
	bruno.waitFor("Ana online", `document.getElementById("chat-sub").dataset.presence === "online"`)
	bruno.blockSocket(true)
	bruno.dropSockets()
	bruno.waitFor("presence unknown while offline", `document.body.dataset.conn !== "online" && document.getElementById("chat-sub").dataset.presence === "unknown"`)
	bruno.blockSocket(false)
	js[chromedp.Void](bruno, `document.getElementById("conn-retry").click()`)
	bruno.waitOnline()
	bruno.waitFor("Ana online again", `document.getElementById("chat-sub").dataset.presence === "online"`)
	ana.checkErrors()
	bruno.checkErrors()
}

// TestBrowserWebPush: the service worker is registered at log-in, and a
// push delivered to it while no papo page is open shows a notification
// for the room (DevTools' ServiceWorker.deliverPushMessage stands in for
// the browser's push service, which headless Chromium has none of; the
// encrypted request the notification service sends is checked apart, in
// services/notification/internal/push).
func TestBrowserWebPush(t *testing.T) {
	s := stack(t, "local")
	b := newBrowser(t)
	base := s.GatewayURL
	bruno := newPerson(t, b, base, "bruno", "Bruno Reis")
	if _, err := chromedp.CallBrowser(bruno.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: browser.PermissionSettingGranted,
		Origin: base, BrowserContextID: chromedp.FromContext(bruno.ctx).BrowserContextID,
	}); err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
	regs := chromedp.Events(bruno.ctx, serviceworker.WorkerRegistrationUpdated)
	if _, err := chromedp.Call(bruno.ctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable ServiceWorker domain: %v", err)
	}
	bruno.register()

	// make run serves a VAPID key (the launcher made it), and a webpush
	// device can be registered with it.
	c := restClient(t, base, bruno)
	var key struct {
		PublicKey string `json:"public_key"`
	}
	if err := c.Do(context.Background(), http.MethodGet, "/api/v1/devices/webpush-key", nil, &key); err != nil {
		t.Fatalf("webpush-key: %v", err)
	}
	if pub, err := base64.RawURLEncoding.DecodeString(key.PublicKey); err != nil || len(pub) != 65 {
		t.Fatalf("webpush-key %q: want a base64url P-256 point", key.PublicKey)
	}
	sub, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	device := map[string]any{"platform": "webpush", "subscription": map[string]any{
		"endpoint": "https://push.example.invalid/send/" + randomName("sub-"),
		"keys":     map[string]string{"p256dh": base64.RawURLEncoding.EncodeToString(sub.PublicKey().Bytes()), "auth": base64.RawURLEncoding.EncodeToString(make([]byte, 16))},
	}}
	if err := c.Do(context.Background(), http.MethodPost, "/api/v1/devices", device, nil); err != nil {
		t.Fatalf("register a webpush device: %v", err)
	}

	room := randomName("push-")
	roomID := bruno.createRoom(room)
	bruno.waitFor("the service worker active", `navigator.serviceWorker.controller !== null || navigator.serviceWorker.ready.then(r => !!r.active)`)
	var regID serviceworker.RegistrationID
	deadline := time.After(30 * time.Second)
	found := make(chan serviceworker.RegistrationID, 1)
	go func() {
		for ev, err := range regs {
			if err != nil {
				return
			}
			for _, r := range ev.Registrations {
				if !r.IsDeleted && strings.HasPrefix(r.ScopeURL, base) {
					select {
					case found <- r.RegistrationID:
					default:
					}
					return
				}
			}
		}
	}()
	select {
	case regID = <-found:
	case <-deadline:
		t.Fatal("no service worker registration for papo's origin")
	}

	// Papo closed (the tab is elsewhere): a push arrives.
	bruno.do("leave papo", chromedp.Navigate("about:blank"))
	payload := fmt.Sprintf(`{"type":"papo.notification","room_id":%s,"title":"Ana Lima in #%s","body":"Pushed while away","count":1}`, quote(roomID), room)
	if _, err := chromedp.Call(bruno.ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
		Origin: base, RegistrationID: regID, Data: payload,
	}); err != nil {
		t.Fatalf("deliver push: %v", err)
	}
	bruno.do("back to papo", chromedp.Navigate(base))
	bruno.waitOnline()
	bruno.waitFor("the pushed notification, tagged and linked to the room", fmt.Sprintf(`navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.some(n => n.title === %s && n.body === "Pushed while away" && n.tag === %s && n.data.room_id === %s))`,
		quote("Ana Lima in #"+room), quote(roomID), quote(roomID)))
	bruno.checkErrors()
}
