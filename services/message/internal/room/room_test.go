package room_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
)

var ctx = context.Background()

type fixture struct {
	store statestore.Store
	pub   *publish.Memory
	svc   *room.Service
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store := memstore.New()
	pub := &publish.Memory{}
	return &fixture{store: store, pub: pub, svc: room.New(store, pub, quiet())}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// roomWith creates a public room owned by owner that the others join: the
// log then holds owner's member_joined at seq 1 and the others' at 2, 3, ….
func (f *fixture) roomWith(t *testing.T, owner string, others ...string) api.Room {
	t.Helper()
	r, err := f.svc.Create(ctx, owner, "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range others {
		if _, err := f.svc.Join(ctx, u, r.ID); err != nil {
			t.Fatalf("join %s: %v", u, err)
		}
	}
	return r
}

func msg(roomID, sender, clientID, text string) events.Submission {
	return events.Submission{Type: api.EventMessage, RoomID: roomID, SenderID: sender, ClientID: clientID, Text: text}
}

func consume(t *testing.T, svc *room.Service, subs ...events.Submission) {
	t.Helper()
	if err := svc.Consume(ctx, events.SubmissionBatch{Submissions: subs}); err != nil {
		t.Fatalf("consume: %v", err)
	}
	quiesce(t, svc)
}

// quiesce waits until svc's append pipeline has materialized everything.
func quiesce(t *testing.T, svc *room.Service) {
	t.Helper()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := svc.Quiesce(qctx); err != nil {
		t.Fatal(err)
	}
}

func history(t *testing.T, svc *room.Service, user, roomID string, p room.Page) api.EventsResponse {
	t.Helper()
	if p.Limit == 0 {
		p.Limit = api.MaxPageLimit
	}
	resp, err := svc.History(ctx, user, roomID, p)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	return resp
}

// batches decodes what was published to room.events.
func batches(t *testing.T, pub *publish.Memory) []events.RoomEventBatch {
	t.Helper()
	var out []events.RoomEventBatch
	for _, b := range pub.Messages(events.TopicRoomEvents) {
		var rb events.RoomEventBatch
		if err := json.Unmarshal(b, &rb); err != nil {
			t.Fatal(err)
		}
		out = append(out, rb)
	}
	return out
}

// received returns the events of bs as a receiver delivers them: in
// order, skipping each seq of a room it already has (a membership event
// is announced again with the room's next change, a redelivered
// submission's event with its redelivery).
func received(bs []events.RoomEventBatch) []api.Event {
	var out []api.Event
	last := map[string]int64{}
	for _, b := range bs {
		for _, e := range b.Events {
			if e.Seq > last[e.RoomID] {
				last[e.RoomID] = e.Seq
				out = append(out, e)
			}
		}
	}
	return out
}

func messagesOnly(evs []api.Event) []api.Event {
	var out []api.Event
	for _, e := range evs {
		if e.Type == api.EventMessage {
			out = append(out, e)
		}
	}
	return out
}

func checkGapFree(t *testing.T, evs []api.Event, from int64) {
	t.Helper()
	for i, e := range evs {
		if want := from + int64(i); e.Seq != want {
			t.Fatalf("event %d has seq %d, want %d (no gap, no duplicate)", i, e.Seq, want)
		}
	}
}

func TestEveryEventGetsTheNextSeq(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob") // alice's join is seq 1, bob's seq 2
	consume(t, f.svc, msg(r.ID, "alice", "a1", "hi"), msg(r.ID, "bob", "b1", "hello"))
	consume(t, f.svc, msg(r.ID, "alice", "a2", "how are you"))
	if err := f.svc.Leave(ctx, "bob", r.ID); err != nil {
		t.Fatal(err)
	}
	got := history(t, f.svc, "alice", r.ID, room.Page{})
	wantTypes := []string{api.EventMemberJoined, api.EventMemberJoined, api.EventMessage, api.EventMessage, api.EventMessage, api.EventMemberLeft}
	if len(got.Events) != len(wantTypes) || got.LastSeq != 6 {
		t.Fatalf("got %d events, last_seq %d, want 6 and 6", len(got.Events), got.LastSeq)
	}
	checkGapFree(t, got.Events, 1)
	for i, e := range got.Events {
		if e.Type != wantTypes[i] || e.RoomID != r.ID || e.ID == "" || e.CreatedAt.IsZero() {
			t.Errorf("event %d = %+v, want type %s", i, e, wantTypes[i])
		}
	}
	if got.Events[2].Text != "hi" || got.Events[2].SenderID != "alice" || got.Events[2].ClientID != "a1" {
		t.Errorf("first message = %+v", got.Events[2])
	}
	// Every persisted event was announced on room.events, in order.
	announced := received(batches(t, f.pub))
	checkGapFree(t, announced, 1)
	if len(announced) != 6 {
		t.Fatalf("announced %d events, want 6", len(announced))
	}
}

func TestPendingSubmissionsOfOneRoomShareOneBatch(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	before := len(batches(t, f.pub))
	consume(t, f.svc, msg(r.ID, "alice", "1", "a"), msg(r.ID, "alice", "2", "b"), msg(r.ID, "alice", "3", "c"))
	bs := batches(t, f.pub)
	if len(bs) != before+1 || len(received(bs)) != 4 || len(bs[before].Events) != 4 {
		t.Fatalf("got %d batches (%+v), want one batch of 3 new events after alice's join", len(bs)-before, bs[before:])
	}
}

func TestRedeliveryAppendsNothingAndAcksTheOriginalSeq(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	consume(t, f.svc, msg(r.ID, "alice", "c1", "once"))
	before := len(batches(t, f.pub))
	// The broker redelivers, and the client retries within a new batch.
	consume(t, f.svc, msg(r.ID, "alice", "c1", "once"), msg(r.ID, "alice", "c2", "twice"), msg(r.ID, "alice", "c2", "twice"))
	got := history(t, f.svc, "alice", r.ID, room.Page{})
	if len(got.Events) != 3 || len(messagesOnly(got.Events)) != 2 || got.LastSeq != 3 {
		t.Fatalf("got %d events, last_seq %d, want 3 (alice's join and 2 messages) and 3", len(got.Events), got.LastSeq)
	}
	bs := batches(t, f.pub)[before:]
	if len(bs) != 1 {
		t.Fatalf("got %d batches, want 1", len(bs))
	}
	wantAcks := []events.Ack{
		{RoomID: r.ID, SenderID: "alice", ClientID: "c1", Seq: 2},
		{RoomID: r.ID, SenderID: "alice", ClientID: "c2", Seq: 3},
	}
	// The redelivered c1's event comes again (its first announcement may be
	// what was lost), before the new event 3; c2's duplicate is not
	// announced twice.
	if fmt.Sprint(bs[0].Acks) != fmt.Sprint(wantAcks) || len(bs[0].Events) != 2 ||
		bs[0].Events[0].Seq != 2 || bs[0].Events[0].ClientID != "c1" || bs[0].Events[0].Text != "once" || bs[0].Events[1].Seq != 3 {
		t.Fatalf("got batch %+v, want events 2 (again) and 3 and acks %+v", bs[0], wantAcks)
	}
}

func TestTheSameClientIDFromAnotherSenderIsANewMessage(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob")
	consume(t, f.svc, msg(r.ID, "alice", "same", "a"), msg(r.ID, "bob", "same", "b"))
	if got := messagesOnly(history(t, f.svc, "alice", r.ID, room.Page{}).Events); len(got) != 2 {
		t.Fatalf("got %d messages, want 2", len(got))
	}
}

func TestRefusedSubmissionsAreRejectedDeadLetteredAndNotStored(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob")
	private, err := f.svc.Create(ctx, "alice", "secret", api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, f.svc, msg(r.ID, "alice", "m1", "mine")) // seq 3, after the joins of alice and bob
	tests := []struct {
		name string
		sub  events.Submission
		code string
	}{
		{"empty text", msg(r.ID, "alice", "x1", ""), "invalid_text"},
		{"text over 4000 characters", msg(r.ID, "alice", "x2", strings.Repeat("é", api.MaxTextRunes+1)), "invalid_text"},
		{"control character", msg(r.ID, "alice", "x3", "bell\a"), "invalid_text"},
		{"invalid utf-8", msg(r.ID, "alice", "x4", "\xff"), "invalid_text"},
		{"client_id over 64", msg(r.ID, "alice", strings.Repeat("c", api.MaxClientIDLen+1), "hi"), "invalid_client_id"},
		{"unknown room", msg("r_nosuchroom", "alice", "x5", "hi"), "room_not_found"},
		{"malformed room id", msg("../x", "alice", "x6", "hi"), "room_not_found"},
		{"non-member", msg(private.ID, "bob", "x7", "let me in"), "not_a_member"},
		{"unknown type", events.Submission{Type: "reaction", RoomID: r.ID, SenderID: "alice", ClientID: "x8"}, "invalid_type"},
		{"edit of another's message", events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "bob", ClientID: "x9", Text: "mine now", TargetSeq: 3}, "not_sender"},
		{"delete of another's message", events.Submission{Type: api.EventDelete, RoomID: r.ID, SenderID: "bob", ClientID: "x10", TargetSeq: 3}, "not_sender"},
		{"edit of a future seq", events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "x11", Text: "t", TargetSeq: 99}, "invalid_target"},
		{"edit of a membership event", events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "x12", Text: "t", TargetSeq: 1}, "invalid_target"},
		{"delete of a membership event", events.Submission{Type: api.EventDelete, RoomID: r.ID, SenderID: "bob", ClientID: "x14", TargetSeq: 2}, "invalid_target"},
		{"edit without target", events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "x13", Text: "t"}, "invalid_target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			beforeBatches, beforeDead := len(batches(t, f.pub)), len(f.pub.Messages(events.TopicDeadLetter))
			consume(t, f.svc, tt.sub)
			bs := batches(t, f.pub)[beforeBatches:]
			if len(bs) != 1 || len(bs[0].Rejections) != 1 || len(bs[0].Events) != 0 {
				t.Fatalf("got batches %+v, want one rejection and no event", bs)
			}
			rej := bs[0].Rejections[0]
			if rej.Code != tt.code || rej.SenderID != tt.sub.SenderID || rej.ClientID != tt.sub.ClientID || rej.Message == "" {
				t.Errorf("got rejection %+v, want code %s for the sender", rej, tt.code)
			}
			dead := f.pub.Messages(events.TopicDeadLetter)[beforeDead:]
			if len(dead) != 1 {
				t.Fatalf("got %d dead letters, want 1", len(dead))
			}
			var dl room.DeadLetter
			if err := json.Unmarshal(dead[0], &dl); err != nil || dl.Code != tt.code || dl.Submission == nil {
				t.Errorf("dead letter %s (%v), want code %s with the submission", dead[0], err, tt.code)
			}
			if got := history(t, f.svc, "alice", r.ID, room.Page{}).LastSeq; got != 3 {
				t.Errorf("last_seq = %d after a refused submission, want 3", got)
			}
		})
	}
	if got := history(t, f.svc, "alice", private.ID, room.Page{}).LastSeq; got != 1 {
		t.Errorf("private room last_seq = %d, want 1 (alice's join): nothing of a non-member is stored", got)
	}
}

func TestLimitsAcceptTheirBoundaries(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	consume(t, f.svc,
		msg(r.ID, "alice", strings.Repeat("c", api.MaxClientIDLen), strings.Repeat("é", api.MaxTextRunes)),
		msg(r.ID, "alice", "tabs", "line one\n\tline two"),
		msg(r.ID, "alice", "", "no client id"))
	got := history(t, f.svc, "alice", r.ID, room.Page{})
	if len(messagesOnly(got.Events)) != 3 || got.LastSeq != 4 {
		t.Fatalf("got %d messages, last_seq %d, want 3 and 4 (rejections: %+v)", len(messagesOnly(got.Events)), got.LastSeq, batches(t, f.pub))
	}
}

func TestEditAndDelete(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	consume(t, f.svc, msg(r.ID, "alice", "m", "secret plan")) // seq 2, after alice's join
	consume(t, f.svc, events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "e", Text: "secret plan v2", TargetSeq: 2})
	consume(t, f.svc, events.Submission{Type: api.EventDelete, RoomID: r.ID, SenderID: "alice", ClientID: "d", TargetSeq: 2})
	got := history(t, f.svc, "alice", r.ID, room.Page{}).Events
	if len(got) != 4 || got[1].Type != api.EventMessage || got[2].Type != api.EventEdit || got[2].TargetSeq != 2 || got[3].Type != api.EventDelete || got[3].TargetSeq != 2 {
		t.Fatalf("got %+v, want alice's join, message, edit of 2, delete of 2", got)
	}
	for _, e := range got {
		if strings.Contains(e.Text, "secret") {
			t.Errorf("deleted text still in history: %+v", e)
		}
	}
	// A deleted message cannot be edited or deleted again.
	consume(t, f.svc, events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "e2", Text: "back", TargetSeq: 2})
	bs := batches(t, f.pub)
	if last := bs[len(bs)-1]; len(last.Rejections) != 1 || last.Rejections[0].Code != "message_deleted" {
		t.Fatalf("edit of a deleted message: got %+v", last)
	}
}

func TestEditAndDeleteInOneBatchEraseTheEditToo(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	consume(t, f.svc, msg(r.ID, "alice", "m", "oops")) // seq 2, after alice's join
	consume(t, f.svc,
		events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "e", Text: "oops again", TargetSeq: 2},
		events.Submission{Type: api.EventDelete, RoomID: r.ID, SenderID: "alice", ClientID: "d", TargetSeq: 2})
	got := history(t, f.svc, "alice", r.ID, room.Page{}).Events
	if len(got) != 4 || got[2].Type != api.EventEdit || got[3].Type != api.EventDelete {
		t.Fatalf("got %+v, want alice's join, message, edit, delete", got)
	}
	for _, e := range got {
		if e.Text != "" {
			t.Errorf("text left after delete: %+v", e)
		}
	}
}

func TestHistoryPagesAreTheRightSlices(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice") // seq 1: alice's join; the messages are 2..131
	var subs []events.Submission
	for i := range 130 {
		subs = append(subs, msg(r.ID, "alice", fmt.Sprint(i), fmt.Sprint("message ", i)))
	}
	consume(t, f.svc, subs...)
	seqs := func(evs []api.Event) string {
		if len(evs) == 0 {
			return "none"
		}
		return fmt.Sprintf("%d..%d (%d)", evs[0].Seq, evs[len(evs)-1].Seq, len(evs))
	}
	tests := []struct {
		name string
		page room.Page
		want string
	}{
		{"latest by default", room.Page{Limit: 50}, "82..131 (50)"},
		{"after 0", room.Page{HasAfter: true, After: 0, Limit: 50}, "1..50 (50)"},
		{"after 100", room.Page{HasAfter: true, After: 100, Limit: 50}, "101..131 (31)"},
		{"after the end", room.Page{HasAfter: true, After: 131, Limit: 50}, "none"},
		{"before 132", room.Page{HasBefore: true, Before: 132, Limit: 50}, "82..131 (50)"},
		{"before 31", room.Page{HasBefore: true, Before: 31, Limit: 50}, "1..30 (30)"},
		{"before 2", room.Page{HasBefore: true, Before: 2, Limit: 50}, "1..1 (1)"},
		{"before 1", room.Page{HasBefore: true, Before: 1, Limit: 50}, "none"},
		{"before past the end", room.Page{HasBefore: true, Before: 1000, Limit: 10}, "122..131 (10)"},
		{"after and before", room.Page{HasAfter: true, After: 10, HasBefore: true, Before: 15, Limit: 50}, "11..14 (4)"},
		{"limit 200", room.Page{HasAfter: true, Limit: 200}, "1..131 (131)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := history(t, f.svc, "alice", r.ID, tt.page)
			if seqs(got.Events) != tt.want || got.LastSeq != 131 {
				t.Fatalf("got %s last_seq %d, want %s last_seq 131", seqs(got.Events), got.LastSeq, tt.want)
			}
			if len(got.Events) > 0 {
				checkGapFree(t, got.Events, got.Events[0].Seq)
			}
		})
	}
	// Paging back with before and forward with after covers every event once.
	var back []api.Event
	for before := int64(132); ; {
		page := history(t, f.svc, "alice", r.ID, room.Page{HasBefore: true, Before: before, Limit: 50}).Events
		if len(page) == 0 {
			break
		}
		back = append(page, back...)
		before = page[0].Seq
	}
	checkGapFree(t, back, 1)
	if len(back) != 131 || len(messagesOnly(back)) != 130 {
		t.Fatalf("paging back got %d events (%d messages), want 131 (130)", len(back), len(messagesOnly(back)))
	}
	for _, bad := range []room.Page{{Limit: 0}, {Limit: api.MaxPageLimit + 1}, {Limit: 5, HasAfter: true, After: -1}} {
		if _, err := f.svc.History(ctx, "alice", r.ID, bad); apierror.KindOf(err) != apierror.Invalid {
			t.Errorf("page %+v: got %v, want Invalid", bad, err)
		}
	}
}

func TestMembership(t *testing.T) {
	f := newFixture(t)
	private, err := f.svc.Create(ctx, "alice", "secret", api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Join(ctx, "mallory", private.ID); apierror.CodeOf(err) != "not_invited" {
		t.Fatalf("join private uninvited: got %v, want not_invited", err)
	}
	if _, _, err := f.svc.AddMember(ctx, "mallory", private.ID, "eve"); apierror.CodeOf(err) != "not_a_member" {
		t.Fatalf("non-member adding: got %v, want not_a_member", err)
	}
	// Naming someone already in changes nothing, and must not answer with
	// the room either.
	if got, _, err := f.svc.AddMember(ctx, "mallory", private.ID, "alice"); apierror.CodeOf(err) != "not_a_member" || got.ID != "" {
		t.Fatalf("non-member adding a member: got %+v, %v; want not_a_member and no room", got, err)
	}
	for _, tt := range []struct{ name, user string }{{"read", "mallory"}} {
		if _, err := f.svc.History(ctx, tt.user, private.ID, room.Page{Limit: 10}); apierror.KindOf(err) != apierror.Forbidden {
			t.Fatalf("%s by non-member: got %v, want Forbidden", tt.name, err)
		}
	}
	if _, err := f.svc.Submit(ctx, msg(private.ID, "mallory", "m", "hi")); apierror.KindOf(err) != apierror.Forbidden {
		t.Fatalf("submit by non-member: got %v, want Forbidden", err)
	}
	if err := f.svc.MarkRead(ctx, "mallory", private.ID, 1); apierror.KindOf(err) != apierror.Forbidden {
		t.Fatalf("read marker by non-member: got %v, want Forbidden", err)
	}
	if _, err := f.svc.Members(ctx, "mallory", private.ID); apierror.KindOf(err) != apierror.Forbidden {
		t.Fatalf("members by non-member: got %v, want Forbidden", err)
	}

	// A member's add is an invitation: bob is not in the room until he
	// accepts it by joining.
	got, inv, err := f.svc.AddMember(ctx, "alice", private.ID, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if got.LastSeq != 1 || inv == nil || inv.UserID != "bob" || inv.InvitedBy != "alice" || inv.Room.ID != private.ID {
		t.Fatalf("after inviting bob: room %+v invitation %+v; want last_seq 1 and an invitation", got, inv)
	}
	if _, err := f.svc.History(ctx, "bob", private.ID, room.Page{Limit: 10}); apierror.KindOf(err) != apierror.Forbidden {
		t.Fatalf("read by the invitee before accepting: got %v, want Forbidden", err)
	}
	// Inviting again changes nothing; bob accepts by joining.
	if _, _, err := f.svc.AddMember(ctx, "alice", private.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if r, err := f.svc.Join(ctx, "bob", private.ID); err != nil || r.LastSeq != 2 {
		t.Fatalf("bob accepting: %+v, %v", r, err)
	}
	if r, err := f.svc.Join(ctx, "bob", private.ID); err != nil || r.LastSeq != 2 {
		t.Fatalf("join as member: %+v, %v", r, err)
	}
	if _, inv, err := f.svc.AddMember(ctx, "alice", private.ID, "bob"); err != nil || inv != nil {
		t.Fatalf("inviting a member: invitation %+v, %v; want none", inv, err)
	}
	members, err := f.svc.Members(ctx, "bob", private.ID)
	if err != nil || fmt.Sprint(members) != "[alice bob]" {
		t.Fatalf("members = %v, %v; want [alice bob]", members, err)
	}
	ev := history(t, f.svc, "bob", private.ID, room.Page{}).Events
	if len(ev) != 2 || ev[0].Type != api.EventMemberJoined || ev[0].UserID != "alice" || ev[0].SenderID != "alice" ||
		ev[1].Type != api.EventMemberJoined || ev[1].UserID != "bob" || ev[1].SenderID != "bob" {
		t.Fatalf("got %+v, want member_joined of alice by alice, then of bob by bob", ev)
	}
	if err := f.svc.Leave(ctx, "bob", private.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Leave(ctx, "bob", private.ID); err != nil {
		t.Fatalf("leaving twice: %v", err)
	}
	if _, err := f.svc.History(ctx, "bob", private.ID, room.Page{Limit: 10}); apierror.KindOf(err) != apierror.Forbidden {
		t.Fatalf("read after leaving: got %v, want Forbidden", err)
	}
	if mine, _ := f.svc.Mine(ctx, "bob"); len(mine) != 0 {
		t.Fatalf("bob's rooms after leaving: %+v", mine)
	}
	if _, err := f.svc.History(ctx, "alice", "r_missing", room.Page{Limit: 10}); apierror.KindOf(err) != apierror.NotFound {
		t.Fatalf("unknown room: got %v, want NotFound", err)
	}
}

func TestRoomNamesAndKinds(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, kind, code string
	}{
		{"", api.RoomPublic, "invalid_name"},
		{"   ", api.RoomPublic, "invalid_name"},
		{strings.Repeat("n", api.MaxRoomName+1), api.RoomPublic, "invalid_name"},
		{"tab\there", api.RoomPublic, "invalid_name"},
		{strings.Repeat("ñ", api.MaxRoomName), api.RoomPublic, ""},
		{"x", api.RoomPrivate, ""},
		{"x", api.RoomDM, "invalid_kind"},
		{"x", "", "invalid_kind"},
	}
	for _, tt := range tests {
		_, err := f.svc.Create(ctx, "alice", tt.name, tt.kind)
		if apierror.CodeOf(err) != tt.code && !(tt.code == "" && err == nil) {
			t.Errorf("create %q %q: got %v, want %q", tt.name, tt.kind, err, tt.code)
		}
	}
}

func TestListsOfRooms(t *testing.T) {
	f := newFixture(t)
	pub := f.roomWith(t, "alice", "bob")
	priv, err := f.svc.Create(ctx, "alice", "hidden", api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	page, err := f.svc.Public(ctx, "", room.DefaultPublicLimit)
	public := page.Rooms
	if err != nil || len(public) != 1 || public[0].ID != pub.ID || public[0].Name != "general" || page.Next != "" {
		t.Fatalf("public rooms = %+v, %v; want only %s", public, err, pub.ID)
	}
	mine, err := f.svc.Mine(ctx, "alice")
	if err != nil || len(mine) != 2 || mine[0].ID != pub.ID || mine[1].ID != priv.ID {
		t.Fatalf("alice's rooms = %+v, %v", mine, err)
	}
	cursors, err := f.svc.Cursors(ctx, "bob")
	if err != nil || len(cursors) != 1 || cursors[0] != (api.RoomCursor{RoomID: pub.ID, LastSeq: 2}) {
		t.Fatalf("bob's cursors = %+v, %v", cursors, err)
	}
	if none, err := f.svc.Mine(ctx, "nobody"); err != nil || none == nil || len(none) != 0 {
		t.Fatalf("rooms of a new user = %#v, %v; want an empty list", none, err)
	}
}

func TestDMIsOneRoomPerPair(t *testing.T) {
	f := newFixture(t)
	a, err := f.svc.OpenDM(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.svc.OpenDM(ctx, "bob", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.Kind != api.RoomDM || fmt.Sprint(a.Members) != "[alice bob]" {
		t.Fatalf("alice got %+v, bob got %+v; want one dm room", a, b)
	}
	c, err := f.svc.OpenDM(ctx, "alice", "carol")
	if err != nil || c.ID == a.ID {
		t.Fatalf("dm with carol = %+v, %v; want another room", c, err)
	}
	if _, err := f.svc.Join(ctx, "carol", a.ID); apierror.CodeOf(err) != "dm_closed" {
		t.Fatalf("third user joining a DM: got %v, want dm_closed", err)
	}
	if _, _, err := f.svc.AddMember(ctx, "alice", a.ID, "carol"); apierror.CodeOf(err) != "dm_closed" {
		t.Fatalf("adding to a DM: got %v, want dm_closed", err)
	}
	if _, err := f.svc.History(ctx, "carol", a.ID, room.Page{Limit: 10}); apierror.KindOf(err) != apierror.Forbidden {
		t.Fatalf("third user reading a DM: got %v, want Forbidden", err)
	}
	if _, err := f.svc.OpenDM(ctx, "alice", "alice"); apierror.CodeOf(err) != "dm_self" {
		t.Fatalf("dm with oneself: got %v", err)
	}
	for _, u := range []string{"alice", "bob"} {
		mine, _ := f.svc.Mine(ctx, u)
		if len(mine) == 0 || mine[0].ID != a.ID {
			t.Errorf("%s's rooms = %+v, want the dm", u, mine)
		}
	}
}

func TestConcurrentDMOpensMakeOneRoom(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := "alice", "bob"
			if i%2 == 1 {
				a, b = b, a
			}
			r, err := f.svc.OpenDM(ctx, a, b)
			if err != nil {
				t.Error(err)
			}
			ids[i] = r.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids %v differ", ids)
		}
	}
	if mine, _ := f.svc.Mine(ctx, "alice"); len(mine) != 1 {
		t.Fatalf("alice's rooms = %+v, want one dm", mine)
	}
}

// TestConcurrentDMOpensInOneReplicaShareOneAttempt: opens of one DM that
// overlap in one replica make one attempt at inserting its head, whoever
// opens it, instead of one racing insert each.
func TestConcurrentDMOpensInOneReplicaShareOneAttempt(t *testing.T) {
	var inserts atomic.Int64
	store := &hookStore{Store: memstore.New(), beforeWrite: func(op statestore.Op) {
		if strings.HasPrefix(op.Key, "room|dm_") && op.IfAbsent {
			inserts.Add(1)
			time.Sleep(50 * time.Millisecond) // every open is under way before the insert lands
		}
	}}
	svc := room.New(store, &publish.Memory{}, quiet())
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := "alice", "bob"
			if i%2 == 1 {
				a, b = b, a
			}
			<-start
			if r, err := svc.OpenDM(ctx, a, b); err != nil || r.LastSeq != 2 {
				t.Errorf("open: %+v, %v", r, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := inserts.Load(); n != 1 {
		t.Fatalf("8 overlapping opens tried %d inserts of the DM's head, want 1", n)
	}
}

func TestUnreadFollowsSendsAndTheMonotonicReadMarker(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice", "bob") // seq 1: alice joined, seq 2: bob
	unread := func(user string) (readSeq, unread int64) {
		t.Helper()
		mine, err := f.svc.Mine(ctx, user)
		if err != nil || len(mine) != 1 {
			t.Fatalf("rooms of %s = %+v, %v", user, mine, err)
		}
		return mine[0].ReadSeq, mine[0].Unread
	}
	if seq, n := unread("bob"); seq != 2 || n != 0 {
		t.Fatalf("bob after joining: read_seq %d unread %d, want 2 (his join) and 0", seq, n)
	}
	consume(t, f.svc, msg(r.ID, "alice", "1", "a"), msg(r.ID, "alice", "2", "b"), msg(r.ID, "alice", "3", "c")) // seqs 3-5
	if _, n := unread("bob"); n != 3 {
		t.Fatalf("bob unread = %d, want 3", n)
	}
	if seq, n := unread("alice"); n != 0 || seq != 5 {
		t.Fatalf("alice (the sender) read_seq %d unread %d, want 5 and 0", seq, n)
	}
	if err := f.svc.MarkRead(ctx, "bob", r.ID, 4); err != nil {
		t.Fatal(err)
	}
	if seq, n := unread("bob"); seq != 4 || n != 1 {
		t.Fatalf("bob after reading 4: read_seq %d unread %d, want 4 and 1", seq, n)
	}
	if err := f.svc.MarkRead(ctx, "bob", r.ID, 3); err != nil {
		t.Fatal(err)
	}
	if seq, n := unread("bob"); seq != 4 || n != 1 {
		t.Fatalf("marker moved backwards: read_seq %d unread %d, want 4 and 1", seq, n)
	}
	// Membership events are not unread; a marker past the end stops at it.
	if err := f.svc.Leave(ctx, "alice", r.ID); err != nil {
		t.Fatal(err)
	}
	if _, n := unread("bob"); n != 1 {
		t.Fatalf("bob unread after alice left = %d, want 1", n)
	}
	if err := f.svc.MarkRead(ctx, "bob", r.ID, 1000); err != nil {
		t.Fatal(err)
	}
	if seq, n := unread("bob"); seq != 6 || n != 0 {
		t.Fatalf("bob after reading past the end: read_seq %d unread %d, want 6 and 0", seq, n)
	}
	if err := f.svc.MarkRead(ctx, "bob", r.ID, -1); apierror.KindOf(err) != apierror.Invalid {
		t.Fatalf("negative seq: got %v, want Invalid", err)
	}
}

// TestRESTSendIsStoredAndAnswersItsSeq: a REST send is stored in the
// replica's next round and answered with its seq (the same seq for a
// repeated client_id); refusals are errors; when the store does not
// answer, the send goes to messages.submitted for a replica to store
// later.
func TestRESTSendIsStoredAndAnswersItsSeq(t *testing.T) {
	store := &flakyStore{Store: memstore.New()}
	pub := &publish.Memory{}
	svc := room.New(store, pub, quiet())
	r, err := svc.Create(ctx, "alice", "general", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		seq, err := svc.Submit(ctx, msg(r.ID, "alice", "c", "via rest"))
		if err != nil || seq != 2 {
			t.Fatalf("send: seq %d, %v; want 2", seq, err)
		}
	}
	if got := pub.Messages(events.TopicSubmitted); len(got) != 0 {
		t.Fatalf("published %d submissions; a stored send is not published", len(got))
	}
	if _, err := svc.Submit(ctx, msg(r.ID, "alice", "e", "")); apierror.CodeOf(err) != "invalid_text" {
		t.Fatalf("empty text: got %v", err)
	}
	if _, err := svc.Submit(ctx, events.Submission{Type: api.EventEdit, RoomID: r.ID, SenderID: "alice", ClientID: "x", Text: "t", TargetSeq: 1}); apierror.CodeOf(err) != "invalid_target" {
		t.Fatalf("edit of a join: got %v, want invalid_target", err)
	}
	// The store fails after the access check: the send is queued.
	store.failWrites.Store(true)
	seq, err := svc.Submit(ctx, msg(r.ID, "alice", "q", "queued"))
	if err != nil || seq != 0 {
		t.Fatalf("send while the store fails: seq %d, %v; want 0 and queued", seq, err)
	}
	got := pub.Messages(events.TopicSubmitted)
	var b events.SubmissionBatch
	if len(got) != 1 || json.Unmarshal(got[0], &b) != nil || len(b.Submissions) != 1 || b.Submissions[0].ClientID != "q" {
		t.Fatalf("published %s", got)
	}
}

// flakyStore fails every write while failWrites is set.
type flakyStore struct {
	statestore.Store
	failWrites atomic.Bool
}

func (f *flakyStore) Write(ctx context.Context, op statestore.Op) error {
	if f.failWrites.Load() {
		return errors.New("store down")
	}
	return f.Store.Write(ctx, op)
}

func (f *flakyStore) Transact(ctx context.Context, ops []statestore.Op) error {
	if f.failWrites.Load() {
		return errors.New("store down")
	}
	return f.Store.Transact(ctx, ops)
}

// TestAPublishFailureIsTransientAndRedeliveryAnnounces: the events of a
// batch whose announcement failed reach the room when the broker
// redelivers it, although nothing is appended again.
func TestAPublishFailureIsTransientAndRedeliveryAnnounces(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	f.pub.SetFailure(errors.New("broker down"))
	err := f.svc.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{msg(r.ID, "alice", "c", "hi")}})
	if err == nil {
		t.Fatal("consume succeeded although nothing could be announced")
	}
	f.pub.SetFailure(nil)
	consume(t, f.svc, msg(r.ID, "alice", "c", "hi"))
	if got := history(t, f.svc, "alice", r.ID, room.Page{}); len(messagesOnly(got.Events)) != 1 || got.LastSeq != 2 {
		t.Fatalf("got %d messages, last_seq %d after redelivery, want 1 and 2", len(messagesOnly(got.Events)), got.LastSeq)
	}
	bs := batches(t, f.pub)
	if last := bs[len(bs)-1]; len(last.Acks) != 1 || last.Acks[0].Seq != 2 || len(last.Events) != 1 || last.Events[0].Seq != 2 || last.Events[0].Text != "hi" {
		t.Fatalf("redelivery announced %+v, want the event at seq 2 and its ack", last)
	}
}

// failingStore fails every write with a non-conflict error.
type failingStore struct{ statestore.Store }

func (failingStore) Transact(context.Context, []statestore.Op) error {
	return errors.New("disk on fire")
}
func (failingStore) Write(context.Context, statestore.Op) error { return errors.New("disk on fire") }

// TestACommittedTailIsServedAndMaterializedLater commits appends whose
// materialization fails (as if the replica died right after its commit):
// history serves them from the head, and the next writer materializes them.
func TestACommittedTailIsServedAndMaterializedLater(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	crashy := room.New(failingTransact{f.store}, f.pub, quiet())
	consume(t, crashy, msg(r.ID, "alice", "1", "one"), msg(r.ID, "alice", "2", "two"))
	if got := history(t, f.svc, "alice", r.ID, room.Page{}); len(got.Events) != 3 || got.Events[2].Text != "two" {
		t.Fatalf("history of an unmaterialized tail = %+v", got)
	}
	consume(t, f.svc, msg(r.ID, "alice", "3", "three"), msg(r.ID, "alice", "1", "one"))
	got := history(t, f.svc, "alice", r.ID, room.Page{})
	checkGapFree(t, got.Events, 1)
	if len(got.Events) != 4 || len(messagesOnly(got.Events)) != 3 {
		t.Fatalf("got %d events, want 4: alice's join and 3 messages (the redelivered 1 is acked, not stored)", len(got.Events))
	}
}

// failingTransact fails every transaction, and nothing else.
type failingTransact struct{ statestore.Store }

func (failingTransact) Transact(context.Context, []statestore.Op) error {
	return errors.New("disk on fire")
}

func TestAStoreFailureIsTransient(t *testing.T) {
	f := newFixture(t)
	r := f.roomWith(t, "alice")
	broken := room.New(failingStore{f.store}, f.pub, quiet())
	if err := broken.Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{msg(r.ID, "alice", "c", "hi")}}); err == nil {
		t.Fatal("consume reported success although the store failed")
	}
	if n := len(f.pub.Messages(events.TopicDeadLetter)); n != 0 {
		t.Fatalf("a transient failure dead-lettered %d submissions", n)
	}
}

// nonAtomic behaves like Dapr's Redis store: a transaction applies each
// operation on its own (a failed ETag check does not undo the others) and
// ignores IfAbsent.
type nonAtomic struct{ statestore.Store }

func (n nonAtomic) Transact(ctx context.Context, ops []statestore.Op) error {
	var failed error
	for _, op := range ops {
		op.IfAbsent = false
		if err := n.Store.Write(ctx, op); err != nil {
			failed = err
		}
	}
	return failed
}

// TestTwoReplicasAppendGapFree runs two Services (two message replicas)
// over one store, with concurrent senders and redeliveries hitting both,
// on an atomic store and on one whose transactions are not atomic.
func TestTwoReplicasAppendGapFree(t *testing.T) {
	for name, store := range map[string]statestore.Store{"atomic": memstore.New(), "non-atomic": nonAtomic{memstore.New()}} {
		t.Run(name, func(t *testing.T) {
			twoReplicas(t, store)
			twoReplicasManyRooms(t, store)
		})
	}
}

// twoReplicasManyRooms is twoReplicas with many rooms: each call hands
// over submissions to several rooms at once (as ws does), so commit rounds
// hold several heads and both replicas race on most of them; through the
// direct path (Append) and the broker's (Consume), with every third call
// repeated on the other replica. Every room must end gap-free, with every
// message once, and every outcome must name the seq its message got.
func twoReplicasManyRooms(t *testing.T, store statestore.Store) {
	t.Helper()
	pubA, pubB := &publish.Memory{}, &publish.Memory{}
	replicas := []*room.Service{room.New(store, pubA, quiet()), room.New(store, pubB, quiet())}
	const rooms, senders, each = 8, 3, 12
	ids := make([]string, rooms)
	for i := range ids {
		r, err := replicas[i%2].Create(ctx, "u0", fmt.Sprint("many ", i), api.RoomPublic)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
		for s := 1; s < senders; s++ {
			if _, err := replicas[(i+s)%2].Join(ctx, fmt.Sprint("u", s), r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	seqOf := map[string]int64{} // room/sender/client → seq answered
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// One call: message i of sender s to every room.
				var subs []events.Submission
				for _, id := range ids {
					subs = append(subs, msg(id, fmt.Sprint("u", s), fmt.Sprint("m", i), fmt.Sprintf("u%d #%d", s, i)))
				}
				for attempt := range 1 + boolInt(i%3 == 0) {
					r := replicas[(s+i+attempt)%2]
					if (s+i)%2 == 0 {
						if err := r.Consume(ctx, events.SubmissionBatch{Submissions: subs}); err != nil {
							t.Error(err)
						}
						continue
					}
					outs, err := r.Append(ctx, subs)
					if err != nil {
						t.Error(err)
						continue
					}
					mu.Lock()
					for j, o := range outs {
						k := subs[j].RoomID + "/" + subs[j].SenderID + "/" + subs[j].ClientID
						if o.Seq < 1 || (seqOf[k] != 0 && seqOf[k] != o.Seq) {
							t.Errorf("%s answered %+v, and %d before", k, o, seqOf[k])
						}
						seqOf[k] = o.Seq
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		var all []api.Event
		for after := int64(0); ; {
			page := history(t, replicas[0], "u0", id, room.Page{HasAfter: true, After: after, Limit: api.MaxPageLimit})
			all = append(all, page.Events...)
			if len(page.Events) == 0 || page.Events[len(page.Events)-1].Seq >= page.LastSeq {
				break
			}
			after = page.Events[len(page.Events)-1].Seq
		}
		checkGapFree(t, all, 1)
		if got, want := int64(len(all)), int64(senders+senders*each); got != want {
			t.Fatalf("room %s has %d events, want %d (joins and messages)", id, got, want)
		}
		seen := map[string]bool{}
		for _, e := range messagesOnly(all) {
			k := e.RoomID + "/" + e.SenderID + "/" + e.ClientID
			if seen[k] {
				t.Fatalf("%s stored twice", k)
			}
			seen[k] = true
			if want, ok := seqOf[k]; ok && want != e.Seq {
				t.Fatalf("%s stored at %d, answered %d", k, e.Seq, want)
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func twoReplicas(t *testing.T, store statestore.Store) {
	pubA, pubB := &publish.Memory{}, &publish.Memory{}
	replicas := []*room.Service{room.New(store, pubA, quiet()), room.New(store, pubB, quiet())}
	r, err := replicas[0].Create(ctx, "u0", "hot", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	const senders, each = 6, 30
	for s := 1; s < senders; s++ {
		if _, err := replicas[s%2].Join(ctx, fmt.Sprint("u", s), r.ID); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				sub := msg(r.ID, fmt.Sprint("u", s), fmt.Sprint(i), fmt.Sprintf("u%d #%d", s, i))
				// Each submission reaches one replica, and every third is
				// redelivered to the other one as well.
				if err := replicas[(s+i)%2].Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{sub}}); err != nil {
					t.Error(err)
				}
				if i%3 == 0 {
					if err := replicas[(s+i+1)%2].Consume(ctx, events.SubmissionBatch{Submissions: []events.Submission{sub}}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	got := history(t, replicas[1], "u0", r.ID, room.Page{HasAfter: true, Limit: api.MaxPageLimit})
	const joins = senders // u0 founded the room (seq 1), the others joined
	if got.LastSeq != joins+senders*each {
		t.Fatalf("last_seq = %d, want %d", got.LastSeq, joins+senders*each)
	}
	var all []api.Event
	for after := int64(0); after < got.LastSeq; {
		page := history(t, replicas[0], "u0", r.ID, room.Page{HasAfter: true, After: after, Limit: api.MaxPageLimit}).Events
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
	checkGapFree(t, all, 1)
	seen := map[string]bool{}
	for _, e := range messagesOnly(all) {
		k := e.SenderID + "/" + e.ClientID
		if seen[k] {
			t.Fatalf("%s stored twice", k)
		}
		seen[k] = true
	}
	if len(seen) != senders*each {
		t.Fatalf("stored %d distinct messages, want %d", len(seen), senders*each)
	}
	// Between them the replicas announced every seq, and a seq twice only
	// when its submission was delivered twice (every third one here): the
	// second delivery announces the stored event again; and every join
	// twice, the second time with the room's next change.
	announced := map[int64]int{}
	for _, pub := range []*publish.Memory{pubA, pubB} {
		for _, b := range batches(t, pub) {
			for _, e := range b.Events {
				announced[e.Seq]++
			}
		}
	}
	for _, e := range all {
		want := 1
		if i, err := strconv.Atoi(e.ClientID); err == nil && e.Type == api.EventMessage && i%3 == 0 {
			want = 2
		}
		if e.Type == api.EventMemberJoined {
			want = 2 // again with the room's next change
		}
		if announced[e.Seq] != want {
			t.Fatalf("seq %d (%s/%s) announced %d times, want %d", e.Seq, e.SenderID, e.ClientID, announced[e.Seq], want)
		}
	}
}
