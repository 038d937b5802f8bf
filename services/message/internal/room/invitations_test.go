package room_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore"

	"github.com/papochat/papo/services/message/internal/room"
)

func invitedRooms(t *testing.T, svc *room.Service, user string) []string {
	t.Helper()
	invs, err := svc.Invitations(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, in := range invs {
		ids = append(ids, in.Room.ID)
	}
	return ids
}

func TestAPrivateRoomIsEnteredOnlyByAcceptingAnInvitation(t *testing.T) {
	f := newFixture(t)
	priv, err := f.svc.Create(ctx, "alice", "secret", api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.AddMember(ctx, "alice", priv.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	// Being invited is not being in: no event, no access, not in bob's rooms.
	if h := history(t, f.svc, "alice", priv.ID, room.Page{}); h.LastSeq != 1 {
		t.Fatalf("the room's log after an invitation: last_seq %d, want 1 (nothing logged)", h.LastSeq)
	}
	if mine, _ := f.svc.Mine(ctx, "bob"); len(mine) != 0 {
		t.Fatalf("bob's rooms after being invited: %+v, want none", mine)
	}
	invs, err := f.svc.Invitations(ctx, "bob")
	if err != nil || len(invs) != 1 || invs[0].Room.ID != priv.ID || invs[0].Room.Name != "secret" || invs[0].InvitedBy != "alice" || invs[0].CreatedAt.IsZero() {
		t.Fatalf("bob's invitations = %+v, %v; want alice's to secret", invs, err)
	}
	if got := invitedRooms(t, f.svc, "carol"); len(got) != 0 {
		t.Fatalf("carol's invitations = %v, want none", got)
	}

	for _, tc := range []struct {
		name string
		do   func() error
		code string
	}{
		{"a non-member cannot invite", func() error { _, _, err := f.svc.AddMember(ctx, "mallory", priv.ID, "carol"); return err }, "not_a_member"},
		{"the uninvited cannot join", func() error { _, err := f.svc.Join(ctx, "carol", priv.ID); return err }, "not_invited"},
		{"an invitation to an unknown room", func() error { _, _, err := f.svc.AddMember(ctx, "alice", "r_nope", "carol"); return err }, "room_not_found"},
		{"declining a bad room id", func() error { return f.svc.Decline(ctx, "bob", "bad id") }, "room_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apierror.CodeOf(tc.do()); got != tc.code {
				t.Fatalf("got %s, want %s", got, tc.code)
			}
		})
	}
	if got := invitedRooms(t, f.svc, "carol"); len(got) != 0 {
		t.Fatalf("carol was invited by a non-member: %v", got)
	}

	t.Run("declining drops the invitation and the way in", func(t *testing.T) {
		if _, _, err := f.svc.AddMember(ctx, "alice", priv.ID, "dave"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Decline(ctx, "dave", priv.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Decline(ctx, "dave", priv.ID); err != nil {
			t.Fatalf("declining twice: %v", err)
		}
		if got := invitedRooms(t, f.svc, "dave"); len(got) != 0 {
			t.Fatalf("dave's invitations after declining: %v", got)
		}
		if _, err := f.svc.Join(ctx, "dave", priv.ID); apierror.CodeOf(err) != "not_invited" {
			t.Fatalf("joining after declining: %v, want not_invited", err)
		}
	})
	t.Run("accepting joins through the membership path and clears the list", func(t *testing.T) {
		r, err := f.svc.Join(ctx, "bob", priv.ID)
		if err != nil || r.LastSeq != 2 {
			t.Fatalf("bob accepting: %+v, %v", r, err)
		}
		ev := history(t, f.svc, "bob", priv.ID, room.Page{}).Events
		if last := ev[len(ev)-1]; last.Type != api.EventMemberJoined || last.UserID != "bob" {
			t.Fatalf("last event %+v, want bob's member_joined", last)
		}
		if got := invitedRooms(t, f.svc, "bob"); len(got) != 0 {
			t.Fatalf("bob's invitations after accepting: %v", got)
		}
		// Leaving and coming back takes a new invitation.
		if err := f.svc.Leave(ctx, "bob", priv.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Join(ctx, "bob", priv.ID); apierror.CodeOf(err) != "not_invited" {
			t.Fatalf("rejoining without a new invitation: %v, want not_invited", err)
		}
	})
	t.Run("an add to a public room is still direct", func(t *testing.T) {
		pub, err := f.svc.Create(ctx, "alice", "open", api.RoomPublic)
		if err != nil {
			t.Fatal(err)
		}
		r, inv, err := f.svc.AddMember(ctx, "alice", pub.ID, "erin")
		if err != nil || inv != nil || r.LastSeq != 2 {
			t.Fatalf("adding erin to a public room: %+v %+v %v", r, inv, err)
		}
	})
}

func TestAUserKeepsTheNewestInvitationsOnly(t *testing.T) {
	f := newFixture(t)
	f.svc.SetMaxRoomsPerUser(room.MaxInvitations + 5)
	var ids []string
	for i := range room.MaxInvitations + 2 {
		r, err := f.svc.Create(ctx, "spammer", fmt.Sprint("room ", i), api.RoomPrivate)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.AddMember(ctx, "spammer", r.ID, "bob"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	got := invitedRooms(t, f.svc, "bob")
	want := slices.Clone(ids[2:])
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("bob's invitations: %d, want the newest %d, newest first", len(got), room.MaxInvitations)
	}
	if _, err := f.svc.Join(ctx, "bob", ids[0]); apierror.CodeOf(err) != "not_invited" {
		t.Fatalf("joining with a dropped invitation: %v, want not_invited", err)
	}
}

func TestRoomsPerUserAreCapped(t *testing.T) {
	f := newFixture(t)
	f.svc.SetMaxRoomsPerUser(2)
	other, err := f.svc.Create(ctx, "alice", "other", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := f.svc.Create(ctx, "alice", "priv", api.RoomPrivate)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.AddMember(ctx, "alice", priv.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	a, err := f.svc.Create(ctx, "bob", "one", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, "bob", "two", api.RoomPrivate); err != nil {
		t.Fatal(err)
	}
	// DMs do not count and are not capped.
	if _, err := f.svc.OpenDM(ctx, "bob", "carol"); err != nil {
		t.Fatalf("a DM at the cap: %v", err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"creating a third room", func() error { _, err := f.svc.Create(ctx, "bob", "three", api.RoomPublic); return err }},
		{"joining a public room", func() error { _, err := f.svc.Join(ctx, "bob", other.ID); return err }},
		{"being added to a public room", func() error { _, _, err := f.svc.AddMember(ctx, "alice", other.ID, "bob"); return err }},
		{"accepting an invitation", func() error { _, err := f.svc.Join(ctx, "bob", priv.ID); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if e, ok := apierror.As(err); !ok || e.Code != "too_many_rooms" || e.Kind != apierror.Conflict {
				t.Fatalf("got %v, want 409 too_many_rooms", err)
			}
		})
	}
	if _, _, err := f.svc.AddMember(ctx, "mallory", other.ID, "bob"); apierror.CodeOf(err) != "not_a_member" {
		t.Fatalf("a non-member naming a user at the cap: %v, want not_a_member (nothing learnt of the user)", err)
	}
	if r, err := f.svc.Join(ctx, "bob", a.ID); err != nil || r.ID != a.ID {
		t.Fatalf("joining a room one is in at the cap is a no-op: %+v, %v", r, err)
	}
	if err := f.svc.Leave(ctx, "bob", a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Join(ctx, "bob", priv.ID); err != nil {
		t.Fatalf("accepting after leaving a room: %v", err)
	}
}

func TestARetriedCreationAtTheCapAnswersItsRoom(t *testing.T) {
	f := newFixture(t)
	f.svc.SetMaxRoomsPerUser(1)
	first, err := f.svc.CreateOnce(ctx, "alice", "only", api.RoomPublic, "c1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.svc.CreateOnce(ctx, "alice", "only", api.RoomPublic, "c1")
	if err != nil || again.ID != first.ID {
		t.Fatalf("the retry at the cap: %+v, %v; want room %s", again, err, first.ID)
	}
	if _, err := f.svc.CreateOnce(ctx, "alice", "second", api.RoomPublic, "c2"); apierror.CodeOf(err) != "too_many_rooms" {
		t.Fatalf("another creation at the cap: %v, want too_many_rooms", err)
	}
}

func TestThePublicListIsPagedNewestFirstFromAPagedIndex(t *testing.T) {
	f := newFixture(t)
	n := room.PublicPageSize + 40
	f.svc.SetMaxRoomsPerUser(n + 10)
	var want []string
	for i := range n {
		r, err := f.svc.Create(ctx, "alice", fmt.Sprint("room ", i), api.RoomPublic)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r.ID)
		if i%50 == 0 { // private rooms are never listed
			if _, err := f.svc.Create(ctx, "alice", "hidden", api.RoomPrivate); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Reverse(want)
	for _, limit := range []int{1, 7, room.DefaultPublicLimit, room.MaxPublicLimit} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > n+1 {
					t.Fatal("the cursor never ends")
				}
				p, err := f.svc.Public(ctx, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Rooms) > limit {
					t.Fatalf("page of %d rooms, limit %d", len(p.Rooms), limit)
				}
				for _, r := range p.Rooms {
					got = append(got, r.ID)
				}
				if p.Next == "" {
					break
				}
				cursor = p.Next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paged through %d rooms, want all %d newest first", len(got), len(want))
			}
		})
	}
	// No key of the index holds more than a page.
	for _, key := range []string{"rooms|public", "rooms|public|1"} {
		it, err := f.store.Get(ctx, key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		var page struct{ IDs []string }
		if err := json.Unmarshal(it.Value, &page); err != nil || len(page.IDs) > room.PublicPageSize {
			t.Fatalf("%s holds %d ids (%v), over a page", key, len(page.IDs), err)
		}
	}
	for _, tc := range []struct {
		cursor string
		limit  int
		code   string
	}{
		{"", 0, "invalid_limit"},
		{"", room.MaxPublicLimit + 1, "invalid_limit"},
		{"x", 10, "invalid_cursor"},
		{"1", 10, "invalid_cursor"},
		{"-1.0", 10, "invalid_cursor"},
		{"1.-2", 10, "invalid_cursor"},
	} {
		if _, err := f.svc.Public(ctx, tc.cursor, tc.limit); apierror.CodeOf(err) != tc.code {
			t.Errorf("cursor %q limit %d: got %v, want %s", tc.cursor, tc.limit, err, tc.code)
		}
	}
}

func TestAnIndexWrittenAsOneKeyKeepsWorking(t *testing.T) {
	f := newFixture(t)
	old, err := f.svc.Create(ctx, "alice", "old", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	// Before pages, the index was this one key, with every public room.
	ids := []string{old.ID}
	for i := range room.PublicPageSize + 10 {
		ids = append(ids, fmt.Sprintf("r_gone%d", i)) // rooms whose heads are missing are skipped
	}
	b, _ := json.Marshal(map[string][]string{"ids": ids})
	if err := f.store.Write(ctx, statestore.Op{Key: "rooms|public", Value: b}); err != nil {
		t.Fatal(err)
	}
	r, err := f.svc.Create(ctx, "alice", "new", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for cursor := ""; ; {
		p, err := f.svc.Public(ctx, cursor, room.MaxPublicLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range p.Rooms {
			got = append(got, x.ID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{r.ID, old.ID}) {
		t.Fatalf("public rooms = %v, want the new room then the old one", got)
	}
}

// TestRoomsCountTheirMembers: the public list and a room's details say
// how many members it has, through joins and leaves.
func TestRoomsCountTheirMembers(t *testing.T) {
	f := newFixture(t)
	r, err := f.svc.Create(ctx, "alice", "counted", api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if r.MemberCount != 1 {
		t.Fatalf("a new room counts %d members, want 1", r.MemberCount)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, err := f.svc.Join(ctx, u, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.Join(ctx, "bob", r.ID); err != nil { // already in: no change
		t.Fatal(err)
	}
	if err := f.svc.Leave(ctx, "carol", r.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Leave(ctx, "carol", r.ID); err != nil { // not in: no change
		t.Fatal(err)
	}
	p, err := f.svc.Public(ctx, "", room.DefaultPublicLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rooms) != 1 || p.Rooms[0].MemberCount != 2 {
		t.Fatalf("public list %+v, want the room with 2 members (alice, bob)", p.Rooms)
	}
}
