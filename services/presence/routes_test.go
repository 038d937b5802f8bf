package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/presence/internal/tracker"
)

type nopNotifier struct{}

func (nopNotifier) Announce(context.Context, []tracker.Change) {}

type server struct {
	url    string
	issuer *authntest.Issuer
}

func newServer(t *testing.T) *server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := tracker.New(memstore.New(), nopNotifier{}, tracker.Config{Grace: 5 * time.Second, LeaseTTL: 25 * time.Second}, time.Now, log)
	iss := authntest.New()
	srv := httptest.NewServer(NewServer(Deps{Tracker: tr, Verifier: iss.Verifier(), Log: log, Ready: map[string]httpapi.Check{}}))
	t.Cleanup(srv.Close)
	return &server{url: srv.URL, issuer: iss}
}

func (s *server) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func errorCode(t *testing.T, b []byte) string {
	t.Helper()
	var e httpapi.ErrorBody
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e.Error.Code
}

func TestQueryAnswersAnyAuthenticatedCaller(t *testing.T) {
	s := newServer(t)
	status, b := s.do(t, "POST", "/internal/v1/presence/connect", "", `{"replica":"ws-1","user_id":"alice","conn_id":"c1"}`)
	if status != http.StatusNoContent {
		t.Fatalf("connect: %d %s", status, b)
	}
	// mallory shares no room with alice: presence is not a secret of room
	// peers (docs/presence.md).
	status, b = s.do(t, "GET", "/api/v1/presence?user_ids=alice,bob,alice", s.issuer.Token("mallory", "s1", time.Minute), "")
	if status != http.StatusOK {
		t.Fatalf("query: %d %s", status, b)
	}
	var got api.PresenceResponse
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Presence) != 2 || got.Presence[0].UserID != "alice" || got.Presence[0].Status != api.Online ||
		got.Presence[1].UserID != "bob" || got.Presence[1].Status != api.Offline || got.Presence[1].LastSeen != nil {
		t.Fatalf("got %s", b)
	}
	if !strings.Contains(string(b), `"last_seen":null`) {
		t.Fatalf("a never-seen user must carry last_seen null: %s", b)
	}
}

func TestQueryRefusesBadInput(t *testing.T) {
	s := newServer(t)
	tok := s.issuer.Token("u1", "s1", time.Minute)
	var ids []string
	for i := range 101 {
		ids = append(ids, fmt.Sprintf("u%d", i))
	}
	tests := []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"no token", "/api/v1/presence?user_ids=a", "", 401, "missing_token"},
		{"bad token", "/api/v1/presence?user_ids=a", "nope", 401, "invalid_token"},
		{"expired token", "/api/v1/presence?user_ids=a", s.issuer.Token("u1", "s1", -time.Minute), 401, "invalid_token"},
		{"no user_ids", "/api/v1/presence", tok, 400, "invalid_user_ids"},
		{"empty user_ids", "/api/v1/presence?user_ids=,,", tok, 400, "invalid_user_ids"},
		{"101 user_ids", "/api/v1/presence?user_ids=" + strings.Join(ids, ","), tok, 400, "too_many_user_ids"},
		{"bad user id", "/api/v1/presence?user_ids=a%7Cb", tok, 400, "invalid_user_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := s.do(t, "GET", tt.path, tt.token, "")
			if status != tt.status || errorCode(t, b) != tt.code {
				t.Fatalf("got %d %s, want %d %s", status, b, tt.status, tt.code)
			}
		})
	}
	status, b := s.do(t, "GET", "/api/v1/presence?user_ids="+strings.Join(ids[:100], ","), tok, "")
	if status != http.StatusOK {
		t.Fatalf("100 user_ids: %d %s", status, b)
	}
}

func TestInternalRoutesRefuseBadInput(t *testing.T) {
	s := newServer(t)
	var many strings.Builder
	many.WriteString(`{"replica":"ws-1","users":{`)
	for i := range MaxHeartbeatUsers + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `"u%d":1`, i)
	}
	many.WriteString("}}")
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"connect: not JSON", "connect", `{`, 400, "invalid_json"},
		{"connect: no replica", "connect", `{"user_id":"a","conn_id":"c"}`, 400, "invalid_replica"},
		{"connect: replica with a separator", "connect", `{"replica":"ws|1","user_id":"a","conn_id":"c"}`, 400, "invalid_replica"},
		{"connect: no user", "connect", `{"replica":"ws-1","conn_id":"c"}`, 400, "invalid_user_id"},
		{"connect: no conn", "connect", `{"replica":"ws-1","user_id":"a"}`, 400, "invalid_conn_id"},
		{"connect: body too large", "connect", `{"replica":"` + strings.Repeat("w", 8<<10) + `"}`, 413, "body_too_large"},
		{"disconnect: no user", "disconnect", `{"replica":"ws-1","conn_id":"c"}`, 400, "invalid_user_id"},
		{"heartbeat: no replica", "heartbeat", `{"users":{}}`, 400, "invalid_replica"},
		{"heartbeat: negative count", "heartbeat", `{"replica":"ws-1","users":{"a":-1}}`, 400, "invalid_count"},
		{"heartbeat: bad user", "heartbeat", `{"replica":"ws-1","users":{"a b":1}}`, 400, "invalid_user_id"},
		{"heartbeat: too many users", "heartbeat", many.String(), 400, "too_many_users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := s.do(t, "POST", "/internal/v1/presence/"+tt.path, "", tt.body)
			if status != tt.status || errorCode(t, b) != tt.code {
				t.Fatalf("got %d %s, want %d %s", status, b, tt.status, tt.code)
			}
		})
	}
}

func TestHeartbeatAndDisconnectRoundTrip(t *testing.T) {
	s := newServer(t)
	tok := s.issuer.Token("u1", "s1", time.Minute)
	if status, b := s.do(t, "POST", "/internal/v1/presence/heartbeat", "", `{"replica":"ws-2","users":{"carol":2}}`); status != 204 {
		t.Fatalf("heartbeat: %d %s", status, b)
	}
	_, b := s.do(t, "GET", "/api/v1/presence?user_ids=carol", tok, "")
	if !strings.Contains(string(b), `"status":"online"`) {
		t.Fatalf("after heartbeat: %s", b)
	}
	if status, b := s.do(t, "POST", "/internal/v1/presence/disconnect", "", `{"replica":"ws-2","user_id":"carol","conn_id":"c1"}`); status != 204 {
		t.Fatalf("disconnect: %d %s", status, b)
	}
	_, b = s.do(t, "GET", "/api/v1/presence?user_ids=carol", tok, "")
	if !strings.Contains(string(b), `"status":"online"`) {
		t.Fatalf("carol has a second connection: %s", b)
	}
}

// The notification service asks through Dapr with no user token.
func TestInternalQueryNeedsNoToken(t *testing.T) {
	s := newServer(t)
	if status, b := s.do(t, "POST", "/internal/v1/presence/connect", "", `{"replica":"ws-1","user_id":"alice","conn_id":"c1"}`); status != http.StatusNoContent {
		t.Fatalf("connect: %d %s", status, b)
	}
	status, b := s.do(t, "GET", "/internal/v1/presence?user_ids=alice,bob", "", "")
	if status != http.StatusOK {
		t.Fatalf("query: %d %s", status, b)
	}
	var got api.PresenceResponse
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Presence) != 2 || got.Presence[0].Status != api.Online || got.Presence[1].Status != api.Offline {
		t.Fatalf("got %s", b)
	}
}
