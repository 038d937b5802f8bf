package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium. Without it the browser tests skip,
// unless PAPO_REQUIRE_INFRA=1 (CI installs it in .ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PAPO_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("PAPO_REQUIRE_INFRA") == "1" {
		t.Fatal("chromium is not installed (apt-get install -y chromium); PAPO_REQUIRE_INFRA=1 makes this a failure")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium): skipping the browser test")
	return ""
}

// newBrowser starts one headless chromium with a fresh profile; each
// person of a test gets a browser context of their own in it (separate
// storage, cookies and cache, like two different browsers). extra adds
// options (flags).
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	browser, closeBrowser := newBrowserAt(t, t.TempDir(), extra...)
	t.Cleanup(closeBrowser)
	return browser
}

// newBrowserAt starts headless chromium on the profile in dir; close shuts
// it down gracefully (the profile is written out, as when a person quits
// the browser), so a later newBrowserAt(dir) is the same browser
// restarted.
func newBrowserAt(t *testing.T, dir string, extra ...chromedp.ExecAllocatorOption) (browser context.Context, close func()) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Both people's tabs must keep running while the other one is in
		// front: no timer throttling of "background" tabs.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 800),
	}
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	if err := chromedp.Do(browser); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	var once sync.Once
	return browser, func() {
		once.Do(func() {
			// Cancel on the browser's first context closes it gracefully.
			ctx, cancel := context.WithTimeout(browser, 20*time.Second)
			defer cancel()
			_ = chromedp.Cancel(ctx)
			cancelBrowser()
			cancelAlloc()
		})
	}
}

// person is one user driving the web client in their own browser context.
type person struct {
	t        *testing.T
	browser  context.Context
	ctx      context.Context
	cancel   context.CancelFunc
	base     string
	Username string
	Display  string
	Password string

	mu   sync.Mutex
	errs []string // uncaught exceptions and CSP violations of the page
}

func newPerson(t *testing.T, browser context.Context, base, prefix, display string) *person {
	name := randomName(prefix)
	p := &person{t: t, browser: browser, base: base, Username: name, Display: display, Password: "pw-" + name}
	p.openTab()
	return p
}

// openTab opens a fresh tab in a fresh browser context (a closed tab's
// sessionStorage is gone, as for a person who closed the window).
func (p *person) openTab() {
	p.t.Helper()
	if p.cancel != nil {
		p.cancel()
	}
	p.ctx, p.cancel = chromedp.NewContext(p.browser, chromedp.WithNewBrowserContext())
	p.watch()
}

// watch starts the person's tab (p.ctx) and records its uncaught
// exceptions and CSP violations.
func (p *person) watch() {
	p.t.Helper()
	if err := chromedp.Do(p.ctx); err != nil {
		p.t.Fatalf("%s: open tab: %v", p.Display, err)
	}
	p.t.Cleanup(p.cancel)
	// Uncaught exceptions and Content-Security-Policy violations fail the
	// test at its end: a client that throws is broken even when the flow
	// passes, and one that needs inline code breaks under the gateway's CSP.
	exceptions := chromedp.Events(p.ctx, cdpruntime.ExceptionThrown)
	entries := chromedp.Events(p.ctx, cdplog.EntryAdded)
	if _, err := chromedp.Call(p.ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		p.t.Fatalf("%s: enable the log: %v", p.Display, err)
	}
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			p.addErr(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e.Level == cdplog.EntryLevelError && (e.Source == cdplog.EntrySourceSecurity || e.Source == cdplog.EntrySourceJavascript) {
				p.addErr(fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
			}
		}
	}()
}

func (p *person) addErr(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, s)
}

// checkErrors fails the test if the page threw or broke the CSP.
func (p *person) checkErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		p.t.Errorf("%s: page error: %s", p.Display, e)
	}
}

// closeTab closes the person's tab: their WebSocket goes away with it.
func (p *person) closeTab() {
	p.cancel()
	p.cancel = nil
}

func (p *person) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.shot("failed-" + p.Display)
		p.t.Fatalf("%s: %s: %v", p.Display, what, err)
	}
}

// js evaluates an expression in the page and decodes its JSON value.
func js[T any](p *person, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.Display, expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is true or the deadline
// passes; the failure names what was awaited and shows a screenshot.
func (p *person) waitFor(what, predicate string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 35*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		file := p.shot("failed-" + p.Display)
		p.checkErrors()
		p.t.Fatalf("%s: waiting for %s: %v (screenshot %s)", p.Display, what, err, file)
	}
}

// shot saves a screenshot of the page to e2e/artifacts/<name>.png.
func (p *person) shot(name string) string {
	dir := "artifacts"
	_ = os.MkdirAll(dir, 0o755)
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	file := filepath.Join(dir, name+".png")
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	return file
}

// blockSocket makes the page's new WebSockets fail to connect (block) or
// work again, as a network that lost the server would. DevTools' URL
// blocking does not cover WebSocket handshakes, so the page's WebSocket
// constructor is swapped for one that dials a path of the same origin
// that is no WebSocket (the gateway answers it with the web page).
func (p *person) blockSocket(block bool) {
	p.t.Helper()
	expr := `window.__realWS ||= WebSocket; window.WebSocket = window.__realWS;`
	if block {
		expr = `window.__realWS ||= WebSocket;
			window.WebSocket = class extends window.__realWS { constructor(url, protocols) { super(url.replace(/\/ws$/, "/ws-blocked"), protocols); } };`
	}
	js[chromedp.Void](p, expr)
}

// dropSockets closes the page's open WebSockets from under it, found
// through the DevTools heap (the client keeps no global handle on them).
// It returns how many were closed.
func (p *person) dropSockets() int {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	proto, err := chromedp.Run(ctx, chromedp.Evaluate[*cdpruntime.RemoteObject]("(window.__realWS || WebSocket).prototype"))
	if err != nil {
		p.t.Fatalf("%s: WebSocket.prototype: %v", p.Display, err)
	}
	found, err := chromedp.Call(ctx, cdpruntime.QueryObjects, cdpruntime.QueryObjectsParams{PrototypeObjectID: proto.ObjectID})
	if err != nil {
		p.t.Fatalf("%s: query WebSockets: %v", p.Display, err)
	}
	yes := true
	res, err := chromedp.Call(ctx, cdpruntime.CallFunctionOn, cdpruntime.CallFunctionOnParams{
		FunctionDeclaration: `function() { let n = 0; for (const ws of this) { try { if (ws.readyState <= 1) { ws.close(4999, "test"); n++; } } catch { /* a prototype, not a socket */ } } return n; }`,
		ObjectID:            found.Objects.ObjectID,
		ReturnByValue:       &yes,
	})
	if err != nil {
		p.t.Fatalf("%s: close WebSockets: %v", p.Display, err)
	}
	if res.ExceptionDetails != nil {
		p.t.Fatalf("%s: close WebSockets: %s", p.Display, res.ExceptionDetails.Text)
	}
	var n int
	if err := json.Unmarshal(res.Result.Value, &n); err != nil {
		p.t.Fatalf("%s: close WebSockets answered %+v: %v", p.Display, res.Result, err)
	}
	return n
}

// darkMode turns the emulated prefers-color-scheme on or off.
func (p *person) darkMode(on bool) {
	p.t.Helper()
	v := "light"
	if on {
		v = "dark"
	}
	_, err := chromedp.Call(p.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}},
	})
	if err != nil {
		p.t.Fatalf("%s: emulate %s theme: %v", p.Display, v, err)
	}
}

// quote makes a Go string a JavaScript string literal.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// register creates the person's account through the web client's form.
func (p *person) register() {
	p.t.Helper()
	p.do("open the app", chromedp.Navigate(p.base), chromedp.WaitVisible(chromedp.CSS("#auth-username")))
	p.do("fill the sign-up form",
		chromedp.Click(chromedp.CSS("#tab-register")),
		chromedp.SendKeys(chromedp.CSS("#auth-username"), p.Username),
		chromedp.SendKeys(chromedp.CSS("#auth-display"), p.Display),
		chromedp.SendKeys(chromedp.CSS("#auth-password"), p.Password),
		chromedp.Click(chromedp.CSS("#auth-submit")),
	)
	p.waitOnline()
}

// login logs in through the form.
func (p *person) login() {
	p.t.Helper()
	p.do("open the app", chromedp.Navigate(p.base), chromedp.WaitVisible(chromedp.CSS("#auth-username")))
	p.do("fill the login form",
		chromedp.SendKeys(chromedp.CSS("#auth-username"), p.Username),
		chromedp.SendKeys(chromedp.CSS("#auth-password"), p.Password),
		chromedp.Click(chromedp.CSS("#auth-submit")),
	)
	p.waitOnline()
}

func (p *person) waitOnline() {
	p.t.Helper()
	p.waitFor("the chat, connected", `document.body.dataset.view === "app" && document.body.dataset.conn === "online"`)
}

// send types text into the composer and presses Enter.
func (p *person) send(text string) {
	p.t.Helper()
	p.do("send "+text, chromedp.Focus(chromedp.CSS("#composer")), chromedp.SendKeys(chromedp.CSS("#composer"), text), enter(0))
}

// enter presses Enter (with modifiers) as a keyboard does. SendKeys's
// "\r" also sends a char event, which types a new line even when the page
// cancelled the keydown, as no real keyboard does.
func enter(modifiers chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", Modifiers: int64(modifiers),
				WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// hasMessage is a predicate: the open room shows a message with text.
func hasMessage(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg .t")].some(e => e.textContent === %s)`, quote(text))
}

// confirmed is a predicate: the own message with text is acknowledged.
func confirmed(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg.mine")].some(e => e.dataset.state === "confirmed" && e.querySelector(".t") && e.querySelector(".t").textContent === %s)`, quote(text))
}

// messageTexts returns the texts of the open room's messages, in order.
func (p *person) messageTexts() []string {
	return js[[]string](p, `[...document.querySelectorAll("#messages .msg .t")].map(e => e.textContent)`)
}

// openRoomNamed clicks the sidebar entry whose name is name.
func (p *person) openRoomNamed(name string) {
	p.t.Helper()
	sel := fmt.Sprintf(`[...document.querySelectorAll(".room-item")].find(b => b.querySelector(".room-name").textContent === %s)`, quote(name))
	p.waitFor("room "+name+" in the sidebar", sel+" !== undefined")
	js[chromedp.Void](p, sel+".click()")
	p.waitFor("room "+name+" open", fmt.Sprintf(`document.getElementById("chat-title").textContent.includes(%s)`, quote(name)))
}

// unreadOf returns the badge number of the sidebar entry named name (0 if none).
func (p *person) unreadOf(name string) string {
	return fmt.Sprintf(`(() => { const b = [...document.querySelectorAll(".room-item")].find(b => b.querySelector(".room-name").textContent === %s); const g = b && b.querySelector(".badge"); return g ? g.textContent : "0"; })()`, quote(name))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}
