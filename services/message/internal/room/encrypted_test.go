package room_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"

	"github.com/papochat/papo/services/message/internal/room"
)

// sealFor seals text from a fresh device of sender for one fresh device of
// each of users.
func sealFor(t *testing.T, roomID, sender, text string, users ...string) *api.Envelope {
	t.Helper()
	from, err := e2ee.NewDevice("d1")
	if err != nil {
		t.Fatal(err)
	}
	var rs []e2ee.Recipient
	for _, u := range users {
		d, _ := e2ee.NewDevice("d1")
		r, _ := e2ee.RecipientOf(u, api.DeviceKey{DeviceID: d.ID, PublicKey: d.Public()})
		rs = append(rs, r)
	}
	env, err := e2ee.Seal(from, sender, roomID, text, rs)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func sealed(roomID, sender, clientID string, env *api.Envelope) events.Submission {
	return events.Submission{Type: api.EventMessage, RoomID: roomID, SenderID: sender, ClientID: clientID, E2EE: env}
}

func TestAnEncryptedDMIsItsOwnRoomAndStaysEncrypted(t *testing.T) {
	f := newFixture(t)
	plain, err := f.svc.OpenDM(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := f.svc.OpenEncryptedDM(ctx, "bob", "alice")
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.svc.OpenEncryptedDM(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if enc.ID == plain.ID || again.ID != enc.ID || !enc.Encrypted || plain.Encrypted || enc.Kind != api.RoomDM {
		t.Fatalf("plain %+v, encrypted %+v, again %+v; want a second, encrypted DM room for the pair", plain, enc, again)
	}
	// Opening the plaintext DM again leaves both as they were.
	if p, _ := f.svc.OpenDM(ctx, "bob", "alice"); p.ID != plain.ID || p.Encrypted {
		t.Errorf("the plaintext DM after the encrypted one: %+v", p)
	}
	if _, err := f.svc.OpenEncryptedDM(ctx, "alice", "alice"); apierror.CodeOf(err) != "dm_self" {
		t.Errorf("an encrypted DM with oneself: %v", err)
	}
	mine, _ := f.svc.Mine(ctx, "alice")
	encrypted := 0
	for _, r := range mine {
		if r.Encrypted {
			encrypted++
		}
	}
	if len(mine) != 2 || encrypted != 1 {
		t.Errorf("alice's rooms %+v; want both DMs, one marked encrypted", mine)
	}
}

func TestEncryptedDMTakesEnvelopesOnly(t *testing.T) {
	f := newFixture(t)
	plain, _ := f.svc.OpenDM(ctx, "alice", "bob")
	enc, _ := f.svc.OpenEncryptedDM(ctx, "alice", "bob")
	good := sealFor(t, enc.ID, "alice", "the secret", "alice", "bob")
	consume(t, f.svc, sealed(enc.ID, "alice", "m1", good)) // seq 3, after both joins

	tests := []struct {
		name string
		sub  events.Submission
		code string
	}{
		{"plaintext in an encrypted DM", msg(enc.ID, "alice", "x1", "hello"), "encryption_required"},
		{"a plaintext edit in an encrypted DM", edit(enc.ID, "alice", "x2", "hello", 3), "encryption_required"},
		{"an envelope in a plaintext DM", sealed(plain.ID, "alice", "x3", sealFor(t, plain.ID, "alice", "x", "alice", "bob")), "not_encrypted"},
		{"a key wrapped for a non-member", sealed(enc.ID, "alice", "x4", sealFor(t, enc.ID, "alice", "x", "alice", "carol")), e2ee.CodeEnvelope},
		{"text and an envelope", events.Submission{Type: api.EventMessage, RoomID: enc.ID, SenderID: "alice", ClientID: "x5", Text: "hi", E2EE: good}, e2ee.CodeEnvelope},
	}
	for _, tt := range tests {
		before := len(batches(t, f.pub))
		err := f.svc.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{tt.sub}})
		quiesce(t, f.svc)
		var code string
		if err != nil {
			code = apierror.CodeOf(err)
		} else if bs := batches(t, f.pub)[before:]; len(bs) == 1 && len(bs[0].Rejections) == 1 {
			code = bs[0].Rejections[0].Code
		}
		if code != tt.code {
			t.Errorf("%s: refused with %q (err %v), want %s", tt.name, code, err, tt.code)
		}
	}
	// The REST send says why at once.
	if _, err := f.svc.Submit(ctx, msg(enc.ID, "bob", "r1", "hello")); apierror.CodeOf(err) != "encryption_required" {
		t.Errorf("REST plaintext to an encrypted DM: %v", err)
	}

	// An envelope edit is stored; history and the announcement carry the
	// envelopes and no text.
	env2 := sealFor(t, enc.ID, "alice", "the secret, edited", "alice", "bob")
	consume(t, f.svc, events.Submission{Type: api.EventEdit, RoomID: enc.ID, SenderID: "alice", ClientID: "e1", E2EE: env2, TargetSeq: 3})
	evs := history(t, f.svc, "bob", enc.ID, room.Page{}).Events
	if len(evs) != 4 || evs[2].E2EE == nil || evs[2].E2EE.CT != good.CT || evs[3].E2EE == nil || evs[3].E2EE.CT != env2.CT || evs[2].Text != "" {
		t.Fatalf("history of the encrypted DM: %+v", evs)
	}
	var announced int
	for _, e := range received(batches(t, f.pub)) {
		if e.RoomID == enc.ID && e.E2EE != nil {
			announced++
		}
	}
	if announced != 2 {
		t.Errorf("announced %d encrypted events, want the message and the edit", announced)
	}

	// A delete erases the envelopes as it erases text.
	if got := storedWith(t, f.store, enc.ID, good.CT); len(got) == 0 {
		t.Fatal("the envelope is not stored where the test looks")
	}
	consume(t, f.svc, del(enc.ID, "alice", "d1", 3))
	for _, ct := range []string{good.CT, env2.CT} {
		if got := storedWith(t, f.store, enc.ID, ct); len(got) != 0 {
			t.Errorf("a deleted message's ciphertext is still stored in %v", got)
		}
	}
	for _, e := range history(t, f.svc, "bob", enc.ID, room.Page{}).Events {
		if e.E2EE != nil {
			t.Errorf("history serves a deleted envelope: %+v", e)
		}
	}
}

func TestAnnouncementsSplitByEnvelopeSize(t *testing.T) {
	f := newFixture(t)
	enc, _ := f.svc.OpenEncryptedDM(ctx, "alice", "bob")
	var subs []events.Submission
	for i := range 80 {
		env := sealFor(t, enc.ID, "alice", strings.Repeat("x", 3500), "alice", "bob")
		subs = append(subs, sealed(enc.ID, "alice", fmt.Sprint("m", i), env))
	}
	consume(t, f.svc, subs...)
	for _, raw := range f.pub.Messages(events.TopicRoomEvents) {
		if len(raw) > room.MaxAnnouncementBytes+16<<10 {
			t.Errorf("an announcement of %d bytes; envelopes must count towards the split (limit about %d)", len(raw), room.MaxAnnouncementBytes)
		}
	}
}
