package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/message/internal/publish"
	"github.com/papochat/papo/services/message/internal/room"
	"github.com/papochat/papo/services/message/internal/server"
)

// TestSubmitRouteAnswersEachSubmission: ws hands submissions over with
// POST events.SubmitRoute and learns, in order, the seq each was stored
// at, the seq of a repeat, or the refusal; stored events are announced,
// refusals only answered. Malformed and oversized calls are 400s.
func TestSubmitRouteAnswersEachSubmission(t *testing.T) {
	e := newEnv(t)
	r := e.createRoom("alice", "general", api.RoomPublic)
	send := func(client, text string) events.Submission {
		return events.Submission{Type: api.EventMessage, RoomID: r.ID, SenderID: "alice", ClientID: client, Text: text}
	}
	batch := events.SubmissionBatch{Submissions: []events.Submission{
		send("c1", "hello"),
		{Type: api.EventMessage, RoomID: r.ID, SenderID: "mallory", ClientID: "m1", Text: "let me in"},
		send("c2", "again"),
		send("c1", "hello"), // a repeat within the call
		{Type: api.EventMessage, RoomID: "r_nosuchroom", SenderID: "alice", ClientID: "c3", Text: "x"},
		send("c4", ""),
	}}
	var res events.SubmitResult
	if st := e.do("", http.MethodPost, events.SubmitRoute, batch, &res); st != http.StatusOK {
		t.Fatalf("submit: %d", st)
	}
	want := []events.Outcome{{Seq: 2}, {Code: "not_a_member"}, {Seq: 3}, {Seq: 2}, {Code: "room_not_found"}, {Code: "invalid_text"}}
	if len(res.Outcomes) != len(want) {
		t.Fatalf("got %d outcomes, want %d: %+v", len(res.Outcomes), len(want), res.Outcomes)
	}
	for i, w := range want {
		if got := res.Outcomes[i]; got.Seq != w.Seq || got.Code != w.Code {
			t.Errorf("outcome %d: got %+v, want %+v", i, got, w)
		}
	}
	// The call again: everything stored is answered with its seq.
	if st := e.do("", http.MethodPost, events.SubmitRoute, batch, &res); st != http.StatusOK || res.Outcomes[0].Seq != 2 || res.Outcomes[2].Seq != 3 {
		t.Fatalf("repeated call: %d %+v", st, res.Outcomes)
	}
	var page api.EventsResponse
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms/"+r.ID+"/events?after=0&limit=10", nil, &page); st != http.StatusOK || page.LastSeq != 3 {
		t.Fatalf("history: %d %+v, want last_seq 3", st, page)
	}
	var rejections int
	for _, b := range e.pub.Messages(events.TopicRoomEvents) {
		var batch events.RoomEventBatch
		if err := json.Unmarshal(b, &batch); err != nil {
			t.Fatal(err)
		}
		rejections += len(batch.Rejections)
	}
	if rejections != 0 {
		t.Fatalf("%d rejections announced; a call's refusals are only answered", rejections)
	}
	for name, body := range map[string]any{
		"not json":  "{",
		"too large": events.SubmissionBatch{Submissions: make([]events.Submission, 1025)},
	} {
		raw, _ := json.Marshal(body)
		if s, ok := body.(string); ok {
			raw = []byte(s)
		}
		if st, _ := e.errorCode("", http.MethodPost, events.SubmitRoute, json.RawMessage(raw)); st != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", name, st)
		}
	}
}

type env struct {
	t     *testing.T
	url   string
	iss   *authntest.Issuer
	pub   *publish.Memory
	rooms *room.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub := &publish.Memory{}
	rooms := room.New(memstore.New(), pub, log)
	iss := authntest.New()
	mux := server.Routes(server.Deps{
		Rooms: rooms, Verifier: iss.Verifier(), Log: log, Users: fakeUsers{},
		Ready: map[string]httpapi.Check{"store": func(context.Context) error { return nil }},
	})
	pubsub.Mount(mux, log, server.Submitted(rooms))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, url: srv.URL, iss: iss, pub: pub, rooms: rooms}
}

// do sends a request as user (no token when user is "") and decodes a JSON
// answer into out when out is not nil.
func (e *env) do(user, method, path string, body any, out any) int {
	e.t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+e.iss.Token(user, "s-"+user, time.Minute))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var eb api.ErrorResponse
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			e.t.Errorf("%s %s: error answer %d is not an error body: %s", method, path, resp.StatusCode, b)
		}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func (e *env) errorCode(user, method, path string, body any) (int, string) {
	e.t.Helper()
	var eb api.ErrorResponse
	status := e.do(user, method, path, body, &eb)
	return status, eb.Error.Code
}

func (e *env) createRoom(user, name, kind string) api.Room {
	e.t.Helper()
	var rr api.RoomResponse
	if st := e.do(user, http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: name, Kind: kind}, &rr); st != http.StatusCreated {
		e.t.Fatalf("create room: %d", st)
	}
	return rr.Room
}

func TestPublicRoutesNeedAToken(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/api/v1/rooms", "/api/v1/rooms/public", "/api/v1/rooms/r_x/events"} {
		if st, code := e.errorCode("", http.MethodGet, p, nil); st != http.StatusUnauthorized || code != "missing_token" {
			t.Errorf("GET %s without token: %d %s, want 401 missing_token", p, st, code)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.url+"/api/v1/rooms", nil)
	req.Header.Set("Authorization", "Bearer "+authntest.New().Token("alice", "s", time.Minute))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token of another issuer: %d, want 401", resp.StatusCode)
	}
	if st := e.do("", http.MethodGet, "/healthz", nil, nil); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
	if st := e.do("", http.MethodGet, "/readyz", nil, nil); st != http.StatusOK {
		t.Fatalf("readyz: %d", st)
	}
}

func TestRoomRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.createRoom("alice", "general", api.RoomPublic)
	// The log starts with the creator's member_joined.
	if r.ID == "" || r.Kind != api.RoomPublic || r.CreatedBy != "alice" || r.LastSeq != 1 {
		t.Fatalf("created %+v", r)
	}
	var joined api.RoomResponse
	if st := e.do("bob", http.MethodPost, "/api/v1/rooms/"+r.ID+"/join", nil, &joined); st != http.StatusOK || joined.Room.LastSeq != 2 {
		t.Fatalf("join: %d %+v", st, joined)
	}
	var public, mine api.RoomsResponse
	if st := e.do("carol", http.MethodGet, "/api/v1/rooms/public", nil, &public); st != http.StatusOK || len(public.Rooms) != 1 {
		t.Fatalf("public: %d %+v", st, public)
	}
	if st := e.do("bob", http.MethodGet, "/api/v1/rooms", nil, &mine); st != http.StatusOK || len(mine.Rooms) != 1 || mine.Rooms[0].ReadSeq != 2 {
		t.Fatalf("mine: %d %+v", st, mine)
	}
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms", nil, &mine); st != http.StatusOK || len(mine.Rooms) != 1 || mine.Rooms[0].ReadSeq != 1 || mine.Rooms[0].LastSeq != 2 || mine.Rooms[0].Unread != 0 {
		t.Fatalf("creator's rooms: %d %+v, want read_seq 1 (her join), last_seq 2, unread 0", st, mine)
	}
	var members server.MembersResponse
	if st := e.do("bob", http.MethodGet, "/api/v1/rooms/"+r.ID+"/members", nil, &members); st != http.StatusOK || fmt.Sprint(members.Members) != "[alice bob]" {
		t.Fatalf("members: %d %+v", st, members)
	}
	if st := e.do("bob", http.MethodPost, "/api/v1/rooms/"+r.ID+"/leave", nil, nil); st != http.StatusNoContent {
		t.Fatalf("leave: %d", st)
	}

	// The public list comes in pages, newest first.
	second := e.createRoom("alice", "second", api.RoomPublic)
	var page1, page2 api.RoomsResponse
	if st := e.do("carol", http.MethodGet, "/api/v1/rooms/public?limit=1", nil, &page1); st != http.StatusOK ||
		len(page1.Rooms) != 1 || page1.Rooms[0].ID != second.ID || page1.NextCursor == "" {
		t.Fatalf("public page 1: %d %+v", st, page1)
	}
	if st := e.do("carol", http.MethodGet, "/api/v1/rooms/public?limit=1&cursor="+page1.NextCursor, nil, &page2); st != http.StatusOK ||
		len(page2.Rooms) != 1 || page2.Rooms[0].ID != r.ID || page2.NextCursor != "" {
		t.Fatalf("public page 2: %d %+v", st, page2)
	}

	private := e.createRoom("alice", "secret", api.RoomPrivate)
	if st, code := e.errorCode("mallory", http.MethodPost, "/api/v1/rooms/"+private.ID+"/join", nil); st != http.StatusForbidden || code != "not_invited" {
		t.Fatalf("join private: %d %s", st, code)
	}
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/rooms/" + private.ID + "/events"},
		{http.MethodGet, "/api/v1/rooms/" + private.ID + "/members"},
		{http.MethodPost, "/api/v1/rooms/" + private.ID + "/messages"},
		{http.MethodPost, "/api/v1/rooms/" + private.ID + "/read"},
		{http.MethodPost, "/api/v1/rooms/" + private.ID + "/members"},
	} {
		body := map[string]any{"text": "hi", "client_id": "c", "seq": 1, "user_id": "eve"}
		if st, code := e.errorCode("mallory", tt.method, tt.path, body); st != http.StatusForbidden || code != "not_a_member" {
			t.Errorf("%s %s by a non-member: %d %s, want 403 not_a_member", tt.method, tt.path, st, code)
		}
	}
	// An add to a private room is an invitation, which bob sees, and
	// accepts by joining (or declines).
	var added api.AddMemberResponse
	if st := e.do("alice", http.MethodPost, "/api/v1/rooms/"+private.ID+"/members", api.AddMemberRequest{UserID: "bob"}, &added); st != http.StatusOK ||
		added.Room.ID != private.ID || added.Invitation == nil || added.Invitation.UserID != "bob" || added.Invitation.InvitedBy != "alice" {
		t.Fatalf("add member: %d %+v", st, added)
	}
	if st, code := e.errorCode("bob", http.MethodGet, "/api/v1/rooms/"+private.ID+"/events", nil); st != http.StatusForbidden || code != "not_a_member" {
		t.Fatalf("the invitee reading before accepting: %d %s", st, code)
	}
	var invs api.InvitationsResponse
	if st := e.do("bob", http.MethodGet, "/api/v1/rooms/invitations", nil, &invs); st != http.StatusOK || len(invs.Invitations) != 1 ||
		invs.Invitations[0].Room.ID != private.ID || invs.Invitations[0].InvitedBy != "alice" {
		t.Fatalf("bob's invitations: %d %+v", st, invs)
	}
	if st := e.do("carol", http.MethodGet, "/api/v1/rooms/invitations", nil, &invs); st != http.StatusOK || len(invs.Invitations) != 0 {
		t.Fatalf("carol's invitations: %d %+v", st, invs)
	}
	if st := e.do("bob", http.MethodPost, "/api/v1/rooms/"+private.ID+"/join", nil, &joined); st != http.StatusOK || joined.Room.ID != private.ID {
		t.Fatalf("bob accepting: %d %+v", st, joined)
	}
	if st := e.do("bob", http.MethodGet, "/api/v1/rooms/"+private.ID+"/events", nil, nil); st != http.StatusOK {
		t.Fatalf("the member reading after accepting: %d", st)
	}
	if st := e.do("alice", http.MethodPost, "/api/v1/rooms/"+private.ID+"/members", api.AddMemberRequest{UserID: "dave"}, nil); st != http.StatusOK {
		t.Fatalf("invite dave: %d", st)
	}
	if st := e.do("dave", http.MethodPost, "/api/v1/rooms/"+private.ID+"/decline", nil, nil); st != http.StatusNoContent {
		t.Fatalf("dave declining: %d", st)
	}
	if st, code := e.errorCode("dave", http.MethodPost, "/api/v1/rooms/"+private.ID+"/join", nil); st != http.StatusForbidden || code != "not_invited" {
		t.Fatalf("joining after declining: %d %s", st, code)
	}
	if st, code := e.errorCode("alice", http.MethodGet, "/api/v1/rooms/r_nosuch/events", nil); st != http.StatusNotFound || code != "room_not_found" {
		t.Fatalf("unknown room: %d %s", st, code)
	}
}

// TestRoomCreationWithAClientIDIsSafeToRetry: the same creator and
// client_id make one room, a retry answers it again, another user's
// client_id is another room, and a client_id reused for another room is
// a conflict.
func TestRoomCreationWithAClientIDIsSafeToRetry(t *testing.T) {
	e := newEnv(t)
	create := func(user string, req api.CreateRoomRequest) (int, api.Room) {
		var rr api.RoomResponse
		st := e.do(user, http.MethodPost, "/api/v1/rooms", req, &rr)
		return st, rr.Room
	}
	req := api.CreateRoomRequest{Name: "team", Kind: api.RoomPrivate, ClientID: "create-1"}
	st1, first := create("alice", req)
	st2, again := create("alice", req)
	if st1 != http.StatusCreated || st2 != http.StatusCreated || first.ID == "" || again.ID != first.ID || again.LastSeq != 1 {
		t.Fatalf("create then retry: %d %+v, %d %+v; want one room, answered twice", st1, first, st2, again)
	}
	if _, other := create("bob", req); other.ID == first.ID || other.CreatedBy != "bob" {
		t.Fatalf("bob's creation with alice's client_id gave %+v", other)
	}
	if _, plain := create("alice", api.CreateRoomRequest{Name: "team", Kind: api.RoomPrivate}); plain.ID == first.ID {
		t.Fatal("a creation without client_id reused a room")
	}
	if st, code := e.errorCode("alice", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "other", Kind: api.RoomPrivate, ClientID: "create-1"}); st != http.StatusConflict || code != "client_id_reused" {
		t.Fatalf("client_id reused for another room: %d %s, want 409 client_id_reused", st, code)
	}
	var mine api.RoomsResponse
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms", nil, &mine); st != http.StatusOK || len(mine.Rooms) != 2 {
		t.Fatalf("alice's rooms: %d %+v, want the retried room once and the plain one", st, mine.Rooms)
	}
}

func TestInputLimits(t *testing.T) {
	e := newEnv(t)
	r := e.createRoom("alice", "general", api.RoomPublic)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"name too long", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: strings.Repeat("n", 81), Kind: "public"}, 400, "invalid_name"},
		{"empty name", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "", Kind: "public"}, 400, "invalid_name"},
		{"bad kind", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "x", Kind: "dm"}, 400, "invalid_kind"},
		{"room client id too long", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "x", Kind: "public", ClientID: strings.Repeat("c", 65)}, 400, "invalid_client_id"},
		{"not json", http.MethodPost, "/api/v1/rooms", "{", 400, "invalid_json"},
		{"body too large", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: strings.Repeat("x", httpapi.DefaultMaxBody), ClientID: "c"}, 413, "body_too_large"},
		{"text too long", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: strings.Repeat("x", 4001), ClientID: "c"}, 400, "invalid_text"},
		{"empty text", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "", ClientID: "c"}, 400, "invalid_text"},
		{"control text", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "a\x00b", ClientID: "c"}, 400, "invalid_text"},
		{"client id too long", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "hi", ClientID: strings.Repeat("c", 65)}, 400, "invalid_client_id"},
		{"client id missing", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "hi"}, 400, "invalid_client_id"},
		{"blank text", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: " \n\t ", ClientID: "c"}, 400, "invalid_text"},
		{"text of invalid UTF-8", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", "{\"text\":\"\xff\xfe\",\"client_id\":\"c\"}", 400, "invalid_text"},
		{"text of a lone surrogate", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", `{"text":"\ud800","client_id":"c"}`, 400, "invalid_text"},
		{"client id of invalid UTF-8", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", "{\"text\":\"hi\",\"client_id\":\"a\xffb\"}", 400, "invalid_client_id"},
		{"client id with a lone surrogate", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", `{"text":"hi","client_id":"a\udc00b"}`, 400, "invalid_client_id"},
		{"client id with a zero-width space", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "hi", ClientID: "c\u200b"}, 400, "invalid_client_id"},
		{"text with a right-to-left override", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "see invoice\u202Efdp.exe", ClientID: "c"}, 400, "invalid_text"},
		{"text with an unclosed bidi isolate", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "\u2068abc", ClientID: "c"}, 400, "invalid_text"},
		{"text of invisible characters only", http.MethodPost, "/api/v1/rooms/" + r.ID + "/messages", api.SendRequest{Text: "\u200b\ufeff", ClientID: "c"}, 400, "invalid_text"},
		{"room name of invalid UTF-8", http.MethodPost, "/api/v1/rooms", "{\"name\":\"gen\xffral\",\"kind\":\"public\"}", 400, "invalid_name"},
		{"room name with a lone surrogate", http.MethodPost, "/api/v1/rooms", `{"name":"\udbff","kind":"public"}`, 400, "invalid_name"},
		{"room name with a right-to-left override", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "lareneg\u202E", Kind: "public"}, 400, "invalid_name"},
		{"room name with a zero-width space", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "gen\u200beral", Kind: "public"}, 400, "invalid_name"},
		{"room name with a line break", http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: "gen\neral", Kind: "public"}, 400, "invalid_name"},
		{"dm with a user id of invalid UTF-8", http.MethodPost, "/api/v1/dms", "{\"user_id\":\"b\xffb\"}", 400, "invalid_user_id"},
		{"public list limit 101", http.MethodGet, "/api/v1/rooms/public?limit=101", nil, 400, "invalid_limit"},
		{"public list limit 0", http.MethodGet, "/api/v1/rooms/public?limit=0", nil, 400, "invalid_limit"},
		{"public list bad cursor", http.MethodGet, "/api/v1/rooms/public?cursor=zz", nil, 400, "invalid_cursor"},
		{"decline of a bad room id", http.MethodPost, "/api/v1/rooms/bad%20id/decline", nil, 404, "room_not_found"},
		{"limit 201", http.MethodGet, "/api/v1/rooms/" + r.ID + "/events?limit=201", nil, 400, "invalid_limit"},
		{"limit 0", http.MethodGet, "/api/v1/rooms/" + r.ID + "/events?limit=0", nil, 400, "invalid_limit"},
		{"after not a number", http.MethodGet, "/api/v1/rooms/" + r.ID + "/events?after=x", nil, 400, "invalid_seq"},
		{"before negative", http.MethodGet, "/api/v1/rooms/" + r.ID + "/events?before=-1", nil, 400, "invalid_seq"},
		{"negative read", http.MethodPost, "/api/v1/rooms/" + r.ID + "/read", api.ReadRequest{Seq: -1}, 400, "invalid_seq"},
		{"read without seq", http.MethodPost, "/api/v1/rooms/" + r.ID + "/read", "{}", 400, "invalid_seq"},
		{"read of null", http.MethodPost, "/api/v1/rooms/" + r.ID + "/read", "null", 400, "invalid_seq"},
		{"dm with a NUL in the user id", http.MethodPost, "/api/v1/dms", `{"user_id":"b\u0000b"}`, 400, "invalid_user_id"},
		{"add member with a NUL in the user id", http.MethodPost, "/api/v1/rooms/" + r.ID + "/members", `{"user_id":"b\u0000b"}`, 400, "invalid_user_id"},
		{"dm with oneself", http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: "alice"}, 400, "dm_self"},
		{"dm without user", http.MethodPost, "/api/v1/dms", api.DMRequest{}, 400, "invalid_user_id"},
		{"add member without user", http.MethodPost, "/api/v1/rooms/" + r.ID + "/members", api.AddMemberRequest{}, 400, "invalid_user_id"},
		{"no such route", http.MethodGet, "/api/v1/rooms/" + r.ID, nil, 404, "not_found"},
		{"no such method", http.MethodDelete, "/api/v1/rooms", nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, code := e.errorCode("alice", tt.method, tt.path, tt.body); st != tt.status || code != tt.code {
				t.Fatalf("got %d %s, want %d %s", st, code, tt.status, tt.code)
			}
		})
	}
	if n := len(e.pub.Messages(events.TopicSubmitted)); n != 0 {
		t.Fatalf("%d invalid sends were published", n)
	}
}

func TestSendIsStoredAndTheSubscriptionStoresToo(t *testing.T) {
	e := newEnv(t)
	r := e.createRoom("alice", "general", api.RoomPublic)
	var sent api.SendResponse
	if st := e.do("alice", http.MethodPost, "/api/v1/rooms/"+r.ID+"/messages", api.SendRequest{Text: "hello", ClientID: "c1"}, &sent); st != http.StatusAccepted || sent != (api.SendResponse{RoomID: r.ID, ClientID: "c1", Seq: 2}) {
		t.Fatalf("send: %d %+v, want 202 and seq 2", st, sent)
	}
	if published := e.pub.Messages(events.TopicSubmitted); len(published) != 0 {
		t.Fatalf("published %d submission batches; a stored send is not published", len(published))
	}
	// Dapr delivers a batch (ws's fallback) to the subscription route as a
	// CloudEvent; its submission is stored too.
	b, _ := json.Marshal(events.SubmissionBatch{Submissions: []events.Submission{{Type: api.EventMessage, RoomID: r.ID, SenderID: "alice", ClientID: "c1", Text: "hello"}}})
	if got := e.deliver(b); got != "SUCCESS" {
		t.Fatalf("delivery answered %s", got)
	}
	var page api.EventsResponse
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms/"+r.ID+"/events?after=0", nil, &page); st != http.StatusOK || len(page.Events) != 2 ||
		page.Events[0].Type != api.EventMemberJoined || page.Events[1].Text != "hello" || page.Events[1].Seq != 2 || page.LastSeq != 2 {
		t.Fatalf("history: %d %+v, want alice's member_joined and hello at seq 2", st, page)
	}
	// A batch published as text arrives as a JSON string, and still counts.
	text, _ := json.Marshal(`{"submissions":[{"type":"message","room_id":"` + r.ID + `","sender_id":"alice","client_id":"c3","text":"as text"}]}`)
	if got := e.deliver(text); got != "SUCCESS" {
		t.Fatalf("text delivery answered %s", got)
	}
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms/"+r.ID+"/events?after=2", nil, &page); st != http.StatusOK || len(page.Events) != 1 || page.Events[0].Text != "as text" {
		t.Fatalf("history after a text delivery: %d %+v", st, page)
	}
	// A malformed payload is dead-lettered and not redelivered.
	if got := e.deliver([]byte(`"not a batch"`)); got != "SUCCESS" {
		t.Fatalf("malformed delivery answered %s, want SUCCESS (dead-lettered)", got)
	}
	if n := len(e.pub.Messages(events.TopicDeadLetter)); n != 1 {
		t.Fatalf("%d dead letters, want 1", n)
	}
	// A transient failure asks Dapr to redeliver.
	e.pub.SetFailure(errors.New("broker down"))
	b, _ = json.Marshal(events.SubmissionBatch{Submissions: []events.Submission{{Type: api.EventMessage, RoomID: r.ID, SenderID: "alice", ClientID: "c2", Text: "again"}}})
	if got := e.deliver(b); got != "RETRY" {
		t.Fatalf("delivery during an outage answered %s, want RETRY", got)
	}
}

func (e *env) deliver(data []byte) string {
	e.t.Helper()
	ce, _ := json.Marshal(map[string]any{
		"id": "1", "specversion": "1.0", "type": "com.dapr.event.sent", "source": "ws",
		"datacontenttype": "application/json", "data": json.RawMessage(data),
		"pubsubname": events.PubSub, "topic": events.TopicSubmitted,
	})
	if !json.Valid(data) {
		ce, _ = json.Marshal(map[string]any{"id": "1", "specversion": "1.0", "data": string(data)})
	}
	resp, err := http.Post(e.url+server.SubmittedRoute, "application/cloudevents+json", bytes.NewReader(ce))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var status struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&status)
	return status.Status
}

// fakeUsers knows every user but the ghosts; "down" cannot be looked up.
type fakeUsers struct{}

func (fakeUsers) Check(_ context.Context, id string) error {
	switch {
	case strings.HasPrefix(id, "ghost"):
		return apierror.New(apierror.NotFound, "user_not_found", "no such user")
	case id == "down":
		return apierror.New(apierror.Unavailable, "unavailable", "auth is unreachable")
	}
	return nil
}

// TestUnknownUsersCannotBeAddedOrDMed: the user named in a DM or an added
// member must exist; nothing is made for one who does not.
func TestUnknownUsersCannotBeAddedOrDMed(t *testing.T) {
	e := newEnv(t)
	r := e.createRoom("alice", "team", api.RoomPrivate)
	if st, code := e.errorCode("alice", http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: "ghost"}); st != http.StatusNotFound || code != "user_not_found" {
		t.Fatalf("dm with an unknown user: %d %s", st, code)
	}
	if st, code := e.errorCode("alice", http.MethodPost, "/api/v1/rooms/"+r.ID+"/members", api.AddMemberRequest{UserID: "ghost"}); st != http.StatusNotFound || code != "user_not_found" {
		t.Fatalf("adding an unknown user: %d %s", st, code)
	}
	if st, code := e.errorCode("alice", http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: "down"}); st != http.StatusServiceUnavailable || code != "unavailable" {
		t.Fatalf("dm while auth is down: %d %s", st, code)
	}
	var mine api.RoomsResponse
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms", nil, &mine); st != http.StatusOK || len(mine.Rooms) != 1 {
		t.Fatalf("alice's rooms: %d %+v, want the team room alone", st, mine.Rooms)
	}
	var members server.MembersResponse
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms/"+r.ID+"/members", nil, &members); st != http.StatusOK || len(members.Members) != 1 {
		t.Fatalf("members: %d %+v, want alice alone", st, members)
	}
}

func TestDMRoutes(t *testing.T) {
	e := newEnv(t)
	var a, b api.RoomResponse
	if st := e.do("alice", http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: "bob"}, &a); st != http.StatusOK {
		t.Fatalf("dm: %d", st)
	}
	if st := e.do("bob", http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: "alice"}, &b); st != http.StatusOK || b.Room.ID != a.Room.ID || b.Room.Kind != api.RoomDM {
		t.Fatalf("dm from the other side: %d %+v vs %+v", st, b.Room, a.Room)
	}
	// Its log starts with both members' member_joined (the sorted pair,
	// sent by alice who opened it), announced once, not at the second open.
	var page api.EventsResponse
	if st := e.do("bob", http.MethodGet, "/api/v1/rooms/"+a.Room.ID+"/events", nil, &page); st != http.StatusOK || page.LastSeq != 2 || len(page.Events) != 2 ||
		page.Events[0].UserID != "alice" || page.Events[1].UserID != "bob" || page.Events[0].SenderID != "alice" || page.Events[1].SenderID != "alice" ||
		page.Events[0].Type != api.EventMemberJoined || page.Events[1].Type != api.EventMemberJoined {
		t.Fatalf("dm log: %d %+v", st, page)
	}
	if got := e.pub.Messages(events.TopicRoomEvents); len(got) != 1 {
		t.Fatalf("%d batches announced for one dm, want 1: %s", len(got), got)
	}
	for user, want := range map[string]int64{"alice": 1, "bob": 2} {
		var mine api.RoomsResponse
		if st := e.do(user, http.MethodGet, "/api/v1/rooms", nil, &mine); st != http.StatusOK || len(mine.Rooms) != 1 || mine.Rooms[0].ReadSeq != want || mine.Rooms[0].Unread != 0 {
			t.Fatalf("%s's rooms: %d %+v, want read_seq %d (own join) and unread 0", user, st, mine, want)
		}
	}
	if st, code := e.errorCode("carol", http.MethodPost, "/api/v1/rooms/"+a.Room.ID+"/join", nil); st != http.StatusForbidden || code != "dm_closed" {
		t.Fatalf("third user joining a dm: %d %s", st, code)
	}
}

func TestInternalRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.createRoom("alice", "general", api.RoomPublic)
	e.do("bob", http.MethodPost, "/api/v1/rooms/"+r.ID+"/join", nil, nil)
	var cursors server.CursorsResponse
	if st := e.do("", http.MethodGet, "/internal/v1/users/bob/rooms", nil, &cursors); st != http.StatusOK || len(cursors.Rooms) != 1 || cursors.Rooms[0] != (api.RoomCursor{RoomID: r.ID, LastSeq: 2}) {
		t.Fatalf("cursors: %d %+v", st, cursors)
	}
	var page api.EventsResponse
	if st := e.do("", http.MethodGet, "/internal/v1/rooms/"+r.ID+"/events?after=0&limit=10", nil, &page); st != http.StatusOK || len(page.Events) != 2 || page.LastSeq != 2 {
		t.Fatalf("internal events: %d %+v", st, page)
	}
	var members server.MembersResponse
	if st := e.do("", http.MethodGet, "/internal/v1/rooms/"+r.ID+"/members", nil, &members); st != http.StatusOK || len(members.Members) != 2 {
		t.Fatalf("internal members: %d %+v", st, members)
	}
	if st := e.do("", http.MethodPost, "/internal/v1/rooms/"+r.ID+"/read", server.InternalReadRequest{UserID: "alice", Seq: 2}, nil); st != http.StatusNoContent {
		t.Fatalf("internal read: %d", st)
	}
	var mine api.RoomsResponse
	if st := e.do("alice", http.MethodGet, "/api/v1/rooms", nil, &mine); st != http.StatusOK || len(mine.Rooms) != 1 || mine.Rooms[0].ReadSeq != 2 {
		t.Fatalf("alice's marker after the internal read: %d %+v, want read_seq 2", st, mine)
	}
	if st, code := e.errorCode("", http.MethodPost, "/internal/v1/rooms/"+r.ID+"/read", server.InternalReadRequest{UserID: "carol", Seq: 1}); st != http.StatusForbidden || code != "not_a_member" {
		t.Fatalf("internal read by a non-member: %d %s", st, code)
	}
	if st, code := e.errorCode("", http.MethodPost, "/internal/v1/rooms/"+r.ID+"/read", server.InternalReadRequest{Seq: 1}); st != http.StatusBadRequest || code != "invalid_user_id" {
		t.Fatalf("internal read without user: %d %s", st, code)
	}
}
