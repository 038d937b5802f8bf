package upstream_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/services/notification/internal/upstream"
)

// sidecar is a real HTTP server standing in for the Dapr sidecar's
// service invocation API.
func sidecar(t *testing.T, h http.Handler) *invoke.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return invoke.New(port, "")
}

func TestRooms(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/invoke/message/method/internal/v1/rooms/{id}/members", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "r1":
			w.Write([]byte(`{"members":["a","b"],"room":{"id":"r1","name":"general","kind":"public","last_seq":7}}`))
		default:
			w.Write([]byte(`{"members":["a","b"]}`))
		}
	})
	rooms := upstream.Rooms{Invoke: sidecar(t, mux), AppID: "message"}
	r, err := rooms.Room(context.Background(), "r1")
	if err != nil || r.Name != "general" || r.Kind != "public" || len(r.Members) != 2 || r.LastSeq != 7 {
		t.Fatalf("r1 = %+v, %v", r, err)
	}
	r, err = rooms.Room(context.Background(), "dm_0123")
	if err != nil || r.Kind != "dm" {
		t.Fatalf("dm = %+v, %v", r, err)
	}
}

func TestPresence(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/invoke/presence/method/internal/v1/presence", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("user_ids") != "a,b" {
			http.Error(w, "bad ids", 400)
			return
		}
		w.Write([]byte(`{"presence":[{"user_id":"a","status":"online"},{"user_id":"b","status":"offline"}]}`))
	})
	p := upstream.Presence{Invoke: sidecar(t, mux), AppID: "presence", Path: "/internal/v1/presence"}
	got, err := p.Online(context.Background(), []string{"a", "b"})
	if err != nil || !got["a"] || got["b"] {
		t.Fatalf("online = %v, %v", got, err)
	}
}

func TestUsernamesAreCached(t *testing.T) {
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/invoke/auth/method/internal/v1/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{"user":{"id":"` + r.PathValue("id") + `","username":"name-` + r.PathValue("id") + `"}}`))
	})
	u := upstream.NewUsers(sidecar(t, mux), "auth", "/internal/v1/users", 2, time.Hour)
	for range 3 {
		got, err := u.Usernames(context.Background(), []string{"a", "b"})
		if err != nil || got["a"] != "name-a" || got["b"] != "name-b" {
			t.Fatalf("usernames = %v, %v", got, err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls for 2 users asked 3 times, want 2", n)
	}
	// The cache is bounded: a third user evicts.
	if _, err := u.Usernames(context.Background(), []string{"c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Usernames(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4 after an eviction", n)
	}
}
