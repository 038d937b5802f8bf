package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/api/e2ee"
)

// device is one device of a user: its own keys, the user's identity.
func device(t *testing.T, u *user, id *e2ee.Identity, deviceID string) *client.Crypto {
	t.Helper()
	d, err := e2ee.NewDevice(deviceID)
	if err != nil {
		t.Fatal(err)
	}
	return client.NewCrypto(u.Client, u.ID, id, d)
}

func identity(t *testing.T) *e2ee.Identity {
	t.Helper()
	id, err := e2ee.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// brokerTap records every payload published on the stack's NATS server
// (a core subscription to every subject sees what JetStream stores and
// delivers, whether a stream keeps it in memory or on disk).
type brokerTap struct {
	mu       sync.Mutex
	payloads [][]byte
}

func tapBroker(t *testing.T, url string) *brokerTap {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to the broker: %v", err)
	}
	t.Cleanup(nc.Close)
	tap := &brokerTap{}
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		tap.mu.Lock()
		tap.payloads = append(tap.payloads, m.Data)
		tap.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tap
}

func (b *brokerTap) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.payloads)
}

// holding reports whether any payload contains any of needles, as they
// are or base64-encoded (asStored): papo's payloads cross the broker as
// a CloudEvent's data_base64 (platform/pubsub publishes bytes).
func (b *brokerTap) holding(needles ...string) bool {
	needles = asStored(needles...)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.payloads {
		for _, n := range needles {
			if bytes.Contains(p, []byte(n)) {
				return true
			}
		}
	}
	return false
}

// asStored returns texts as they may appear in a state store's files:
// as they are, and inside standard base64 (Dapr's SQLite store keeps the
// bytes it is given base64-encoded), at each of the three alignments a
// text can have in the encoded value.
func asStored(texts ...string) []string {
	var out []string
	for _, s := range texts {
		out = append(out, s)
		for k := range 3 {
			enc := base64.StdEncoding.EncodeToString(append(make([]byte, k), s...))
			// Drop the characters that mix in the bytes before and after.
			from, to := (k+2)/3*4, len(enc)-4
			if to-from >= 8 {
				out = append(out, enc[from:to])
			}
		}
	}
	return out
}

// filesWith returns the files under dir whose bytes contain any of
// needles.
func filesWith(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "bin" {
			return filepath.SkipDir // the stack's binaries
		}
		if err != nil || d.IsDir() {
			return nil // a file that went away while walking (a WAL checkpoint)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestEncryptedDMsOverTheRealStack: over the whole stack (local profile:
// SQLite state stores, whose files the test scans, and JetStream, whose
// every payload it reads), alice
// and bob (two devices, the second added later) exchange end-to-end
// encrypted DMs over the WebSocket and REST. Neither the state stores,
// the broker's payloads nor the push a notification sends contain any text,
// while a plaintext control message is found in both; both users read
// everything sent to their devices, a later device reads what is sent
// after it, a removed one nothing sent after its removal, a third user
// nothing; the safety numbers match, and a reset identity is noticed.
func TestEncryptedDMsOverTheRealStack(t *testing.T) {
	s, recv := notificationStack(t, "local")
	if s.NATSURL == "" {
		t.Fatal("the local profile has no NATS server to read")
	}
	broker := tapBroker(t, s.NATSURL)
	ctx := context.Background()
	alice, bob, carol := newUser(t, s, "ali"), newUser(t, s, "bob"), newUser(t, s, "car")
	aliceID, bobID := identity(t), identity(t)
	a1 := device(t, alice, aliceID, "a1")
	b1 := device(t, bob, bobID, "b1")
	for _, d := range []*client.Crypto{a1, b1} {
		if err := d.Publish(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	hook := registerWebhook(t, bob) // bob stays offline: his devices get pushes

	dm, err := alice.OpenEncryptedDM(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	same, err := bob.OpenEncryptedDM(ctx, alice.ID)
	if err != nil || same.ID != dm.ID || !dm.Encrypted || dm.Kind != api.RoomDM {
		t.Fatalf("encrypted DM: alice %+v, bob %+v (%v); want one encrypted DM", dm, same, err)
	}
	plainDM, err := alice.OpenDM(ctx, bob.ID)
	if err != nil || plainDM.ID == dm.ID || plainDM.Encrypted {
		t.Fatalf("the plaintext DM %+v (%v) must be another room", plainDM, err)
	}
	if status, code := apiStatus(t, alice.Send(ctx, dm.ID, randomName("p"), "plaintext")); status != 400 || code != "encryption_required" {
		t.Fatalf("plaintext to the encrypted DM: %d %s; want 400 encryption_required", status, code)
	}

	na, err := a1.SafetyNumber(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := b1.SafetyNumber(ctx, alice.ID)
	if err != nil || nb != na {
		t.Fatalf("safety numbers: alice sees %q, bob %q (%v); want equal", na, nb, err)
	}

	secrets := map[string]string{}
	secret := func(name string) string {
		secrets[name] = randomName("secret-" + name + "-")
		return secrets[name]
	}
	// Over the WebSocket: alice seals, the ack says it is stored.
	ws := dialGateway(t, alice)
	col := newCollector(ws)
	env, err := a1.Seal(ctx, dm.ID, bob.ID, secret("ws"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: dm.ID, ClientID: "c-ws", E2EE: env}); err != nil {
		t.Fatal(err)
	}
	col.until(t, 20*time.Second, "the ack of the encrypted send", func() bool { _, ok := col.acks["c-ws"]; return ok })
	// Over REST: bob answers.
	if err := b1.Send(ctx, dm.ID, alice.ID, "c-rest", secret("rest")); err != nil {
		t.Fatal(err)
	}

	// bob links a second device (his identity signs it); alice's next
	// message is wrapped for it, and alice sees it was added.
	b2 := device(t, bob, bobID, "b2")
	if err := b2.Publish(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := a1.Send(ctx, dm.ID, bob.ID, "c-after-b2", secret("after-b2")); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(a1.Notices(), client.Notice{UserID: bob.ID, Kind: client.NoticeDeviceAdded, DeviceID: "b2"}) {
		t.Errorf("alice's notices %+v; want bob's device b2 added", a1.Notices())
	}
	// bob removes b1; what alice sends next is not for it.
	if err := bob.DeleteDeviceKey(ctx, bob.ID, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := a1.Send(ctx, dm.ID, bob.ID, "c-after-removal", secret("after-removal")); err != nil {
		t.Fatal(err)
	}

	var hist api.EventsResponse
	within(t, 20*time.Second, "four encrypted messages in history", func() bool {
		hist, err = bob.EventsAfter(ctx, dm.ID, 0, 50)
		n := 0
		for _, e := range hist.Events {
			if e.Type == api.EventMessage {
				n++
			}
		}
		return err == nil && n == 4
	})
	order := []string{"ws", "rest", "after-b2", "after-removal"}
	readable := map[*client.Crypto][]string{
		a1: order,
		b1: {"ws", "rest", "after-b2"},    // not what was sent after its removal
		b2: {"after-b2", "after-removal"}, // not what was sent before it existed
	}
	names := map[*client.Crypto]string{a1: "alice/a1", b1: "bob/b1", b2: "bob/b2"}
	var msgs []api.Event
	for _, e := range hist.Events {
		if e.Type == api.EventMessage {
			if e.Text != "" || e.E2EE == nil {
				t.Fatalf("an event of the encrypted DM with text or no envelope: %+v", e)
			}
			msgs = append(msgs, e)
		}
	}
	for dev, want := range readable {
		for i, e := range msgs {
			text, err := dev.Decrypt(ctx, e)
			switch {
			case slices.Contains(want, order[i]) && (err != nil || text != secrets[order[i]]):
				t.Errorf("%s reads message %q as %q, %v", names[dev], order[i], text, err)
			case !slices.Contains(want, order[i]) && !errors.Is(err, e2ee.ErrCannotDecrypt):
				t.Errorf("%s reads message %q (%q, %v); it was not sent to that device", names[dev], order[i], text, err)
			}
		}
	}
	// A third user: no history, and no wrap in any envelope.
	if status, _ := apiStatus(t, func() error { _, err := carol.EventsAfter(ctx, dm.ID, 0, 50); return err }()); status != 403 {
		t.Errorf("carol reading the encrypted DM: %d, want 403", status)
	}
	c1 := device(t, carol, identity(t), "c1")
	if err := c1.Publish(ctx, false); err != nil {
		t.Fatal(err)
	}
	for i, e := range msgs {
		if _, err := c1.Decrypt(ctx, e); !errors.Is(err, e2ee.ErrCannotDecrypt) {
			t.Errorf("carol decrypts message %q: %v", order[i], err)
		}
	}

	// bob resets his identity on a new device: alice notices, and the
	// safety number changes — the same new number on both sides.
	b3 := device(t, bob, identity(t), "b3")
	if err := b3.Publish(ctx, true); err != nil {
		t.Fatal(err)
	}
	na2, err := a1.SafetyNumber(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	nb2, _ := b3.SafetyNumber(ctx, alice.ID)
	if na2 == na || nb2 != na2 {
		t.Errorf("after bob's reset: alice sees %q (before %q), bob %q; want a new number, equal on both sides", na2, na, nb2)
	}
	if !slices.Contains(a1.Notices(), client.Notice{UserID: bob.ID, Kind: client.NoticeIdentityChanged}) {
		t.Errorf("alice's notices %+v; want bob's identity changed", a1.Notices())
	}

	// A plaintext control message, to prove the scan sees the stores and
	// the broker.
	control := randomName("control-")
	if err := alice.Send(ctx, plainDM.ID, randomName("c"), control); err != nil {
		t.Fatal(err)
	}
	within(t, 30*time.Second, "bob's push for the encrypted DM", func() bool {
		for _, p := range recv.pushes(hook) {
			if p["room_id"] == dm.ID {
				return true
			}
		}
		return false
	})
	var inStore, onBroker bool
	for deadline := time.Now().Add(30 * time.Second); !inStore || !onBroker; {
		if time.Now().After(deadline) {
			t.Fatalf("the control text: in the message store %v (files with it: %v), on the broker %v (%d payloads); want both",
				inStore, filesWith(t, s.DataDir, asStored(control)...), onBroker, broker.count())
		}
		for _, f := range filesWith(t, s.DataDir, asStored(control)...) {
			rel, _ := filepath.Rel(s.DataDir, f)
			inStore = inStore || strings.HasPrefix(rel, "messagestore.db")
		}
		onBroker = broker.holding(control)
		time.Sleep(100 * time.Millisecond) // polling, bounded by the deadline
	}
	var all []string
	for _, v := range secrets {
		all = append(all, v)
	}
	if found := filesWith(t, s.DataDir, asStored(all...)...); len(found) != 0 {
		t.Errorf("encrypted DM text found in %v", found)
	}
	if broker.holding(all...) {
		t.Error("encrypted DM text found in a broker payload")
	}
	if len(filesWith(t, s.DataDir, asStored(env.CT)...)) == 0 {
		t.Error("the store never held the WebSocket send's ciphertext: the scan sees nothing of the DM")
	}
	if !broker.holding(env.CT) {
		t.Error("the broker never carried the WebSocket send's ciphertext: the tap sees nothing of the DM")
	}
	pushes, _ := json.Marshal(recv.pushes(hook))
	for _, v := range all {
		if bytes.Contains(pushes, []byte(v)) {
			t.Errorf("a push carries the text %q: %s", v, pushes)
		}
	}
}
