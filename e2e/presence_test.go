package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

// forEachProfile runs a presence test on the local profile (SQLite TTLs),
// on Redis (skipped when Redis does not answer) and on kafka-postgres
// (PostgreSQL TTLs, presence announced over Kafka).
func forEachProfile(t *testing.T, test func(*testing.T, *launcher.Stack)) {
	for _, profile := range []string{"local", "redis", "kafka-postgres"} {
		t.Run(profile, func(t *testing.T) { test(t, stack(t, profile)) })
	}
}

// presenceWatch reads an observer's connection and keeps the presence
// frames about one user.
type presenceWatch struct {
	ws     *client.WS
	userID string
}

// next returns the next presence frame about the watched user, or ok
// false when none came within timeout.
func (p presenceWatch) next(t *testing.T, timeout time.Duration) (api.ServerFrame, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		f, err := p.ws.Read(ctx)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return api.ServerFrame{}, false
		}
		if err != nil {
			t.Fatalf("observer connection: %v", err)
		}
		if f.Type == api.FramePresence && f.UserID == p.userID {
			return f, true
		}
	}
}

func (p presenceWatch) want(t *testing.T, timeout time.Duration, status string) api.ServerFrame {
	t.Helper()
	start := time.Now()
	f, ok := p.next(t, timeout)
	if !ok {
		t.Fatalf("no presence frame %s for %s within %s", status, p.userID, timeout)
	}
	if f.Status != status {
		t.Fatalf("presence frame for %s says %s, want %s", p.userID, f.Status, status)
	}
	t.Logf("%s %s after %s", p.userID, status, time.Since(start).Round(100*time.Millisecond))
	return f
}

func queryStatus(t *testing.T, asker *user, uid string) api.Presence {
	t.Helper()
	got, err := asker.Presence(context.Background(), uid)
	if err != nil {
		t.Fatalf("presence query: %v", err)
	}
	if len(got) != 1 || got[0].UserID != uid {
		t.Fatalf("presence query answered %+v", got)
	}
	return got[0]
}

// roomPair registers two users sharing a room; the observer connects to
// ws-2 and watches the subject.
func roomPair(t *testing.T, s *launcher.Stack) (subject, observer *user, watch presenceWatch) {
	t.Helper()
	ctx := context.Background()
	subject, observer = newUser(t, s, "subj"), newUser(t, s, "obs")
	room, err := observer.CreateRoom(ctx, "presence "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subject.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	ws := dialReplica(t, s, "ws-2", observer)
	goLive(t, ws)
	return subject, observer, presenceWatch{ws: ws, userID: subject.ID}
}

// goLive waits until the server has processed a fresh connection's first
// frames (the resume DialWS sent, another one, a ping), so its rooms are
// routed before the test goes on.
func goLive(t *testing.T, ws *client.WS) {
	t.Helper()
	if err := ws.WriteRaw([]byte(`{"type":"resume","rooms":{}}`)); err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(api.ClientFrame{Type: api.FramePing}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		f, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for pong: %v", err)
		}
		if f.Type == api.FramePong {
			return
		}
	}
}

// TestPresenceOnlineOfflineAndNoFlap: a peer is seen going online (frame
// and query), a quick reconnect on the other replica announces nothing,
// and a real disconnect is announced offline within seconds.
func TestPresenceOnlineOfflineAndNoFlap(t *testing.T) {
	forEachProfile(t, presenceOnlineOfflineAndNoFlap)
}

func presenceOnlineOfflineAndNoFlap(t *testing.T, s *launcher.Stack) {
	subject, observer, watch := roomPair(t, s)

	if got := queryStatus(t, observer, subject.ID); got.Status != api.Offline || got.LastSeen != nil {
		t.Fatalf("before connecting: %+v, want offline, never seen", got)
	}
	first := dialReplica(t, s, "ws-1", subject)
	watch.want(t, 15*time.Second, api.Online)
	if got := queryStatus(t, observer, subject.ID); got.Status != api.Online {
		t.Fatalf("query after connect: %+v", got)
	}

	// Quick reconnect, through the other replica: no flapping.
	first.Close()
	dialReplica(t, s, "ws-2", subject)
	if f, ok := watch.next(t, 8*time.Second); ok {
		t.Fatalf("a reconnect within the grace period announced %s", f.Status)
	}
	if got := queryStatus(t, observer, subject.ID); got.Status != api.Online {
		t.Fatalf("query after quick reconnect: %+v", got)
	}
}

// TestPresenceOfflineAfterDisconnect: the last connection closes, offline
// is announced after the grace period with last_seen.
func TestPresenceOfflineAfterDisconnect(t *testing.T) {
	forEachProfile(t, presenceOfflineAfterDisconnect)
}

func presenceOfflineAfterDisconnect(t *testing.T, s *launcher.Stack) {
	subject, observer, watch := roomPair(t, s)
	ws := dialReplica(t, s, "ws-1", subject)
	watch.want(t, 15*time.Second, api.Online)
	closed := time.Now()
	ws.Close()
	f := watch.want(t, 15*time.Second, api.Offline)
	if f.LastSeen == nil || f.LastSeen.Before(closed.Add(-2*time.Second)) || f.LastSeen.After(time.Now()) {
		t.Fatalf("offline frame last_seen %v, closed at %v", f.LastSeen, closed)
	}
	if got := queryStatus(t, observer, subject.ID); got.Status != api.Offline || got.LastSeen == nil {
		t.Fatalf("query after disconnect: %+v", got)
	}
}

// TestPresenceKilledReplica kills ws-1 with SIGKILL while a user is
// connected there only: the observer on ws-2 sees them offline within 30 s.
// ws-1 is restarted, and delivering live, for the tests that follow.
func TestPresenceKilledReplica(t *testing.T) {
	forEachProfile(t, presenceKilledReplica)
}

func presenceKilledReplica(t *testing.T, s *launcher.Stack) {
	subject, observer, watch := roomPair(t, s)
	dialReplica(t, s, "ws-1", subject)
	watch.want(t, 15*time.Second, api.Online)

	ws1 := s.App("ws-1")
	killed := time.Now()
	ws1.Kill()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		path, err := s.DaprdPath(ctx)
		if err == nil {
			err = ws1.Restart(ctx, path)
		}
		if err != nil {
			t.Errorf("restart ws-1: %v", err)
			return
		}
		waitLive(t, s, "ws-1")
	})
	f, ok := watch.next(t, 30*time.Second-time.Since(killed))
	if !ok || f.Status != api.Offline {
		t.Fatalf("no offline frame within 30 s of the kill (got %+v); the query says %+v", f, queryStatus(t, observer, subject.ID))
	}
	t.Logf("offline %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	if got := queryStatus(t, observer, subject.ID); got.Status != api.Offline {
		t.Fatalf("query after kill: %+v", got)
	}
}

// TestPresenceOfAPeerWhoConnectsRightAfterYou: alice connects and sends
// nothing yet; bob, who shares a room with her, connects right after;
// alice is told bob is online (signals are never held after hello; they
// were for 500 ms, and this one was lost).
func TestPresenceOfAPeerWhoConnectsRightAfterYou(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "presence "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	watch := presenceWatch{ws: dialGatewayWith(t, alice, &client.WSOptions{NoResume: true}), userID: bob.ID}
	dialGateway(t, bob) // at once: within alice's first 500 ms (WS_LIVE_HOLD)
	watch.want(t, 15*time.Second, api.Online)
}
