package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// TestAuthOverTheRealStack follows API.md's auth section through the
// gateway, over real sidecars: JWKS, refresh rotation, reuse detection,
// and a logout that other services and the WebSocket honour at once.
func TestAuthOverTheRealStack(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()

	t.Run("jwks lists keys with kid, persisted in the local secret file", func(t *testing.T) {
		var set struct {
			Keys []struct{ Kid, Kty, Crv string } `json:"keys"`
		}
		if err := client.New(s.GatewayURL).Do(ctx, http.MethodGet, "/api/v1/auth/jwks", nil, &set); err != nil {
			t.Fatal(err)
		}
		if len(set.Keys) == 0 || set.Keys[0].Kid == "" || set.Keys[0].Kty != "OKP" {
			t.Fatalf("jwks %+v", set)
		}
		b, err := os.ReadFile(filepath.Join(s.DataDir, "secrets.json"))
		if err != nil {
			t.Fatal(err)
		}
		var secrets map[string]string
		if err := json.Unmarshal(b, &secrets); err != nil || secrets["auth-signing-keys"] == "" {
			t.Fatalf("the generated key is not in the secret file the component reads: %v", err)
		}
	})

	t.Run("refresh rotates; reuse kills the session's newest token", func(t *testing.T) {
		u := newUser(t, s, "refresh")
		second, err := u.Client.Refresh(ctx, u.Refresh)
		if err != nil {
			t.Fatal(err)
		}
		if second.RefreshToken == u.Refresh {
			t.Fatal("refresh did not rotate")
		}
		if _, err := u.Me(ctx); err != nil {
			t.Fatalf("new access token: %v", err)
		}
		_, err = client.New(s.GatewayURL).Refresh(ctx, u.Refresh)
		if status(err) != http.StatusUnauthorized {
			t.Fatalf("reuse: %v, want 401", err)
		}
		if _, err := client.New(s.GatewayURL).Refresh(ctx, second.RefreshToken); status(err) != http.StatusUnauthorized {
			t.Fatalf("newest token after reuse: %v, want 401", err)
		}
		eventually(t, 5*time.Second, "the revoked access token is refused by the message service", func() bool {
			_, err := u.Rooms(ctx)
			return status(err) == http.StatusUnauthorized
		})
	})

	t.Run("logout refuses the token everywhere and closes the socket", func(t *testing.T) {
		u := newUser(t, s, "logout")
		ws := dialGateway(t, u)
		if ws.Hello.UserID != u.ID || ws.Hello.SessionID == "" {
			t.Fatalf("hello %+v", ws.Hello)
		}
		if err := u.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := u.Me(ctx); status(err) != http.StatusUnauthorized {
			t.Fatalf("me after logout: %v, want 401", err)
		}
		eventually(t, 5*time.Second, "rooms refuse the token", func() bool {
			_, err := u.Rooms(ctx)
			return status(err) == http.StatusUnauthorized
		})
		select {
		case <-ws.Done():
			if code := client.CloseCode(ws.Err()); code != api.CloseSessionRevoked {
				t.Logf("socket closed with %d (want %d): %v", code, api.CloseSessionRevoked, ws.Err())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the socket is still open 5 s after logout")
		}
		dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if _, err := client.DialWS(dialCtx, "ws"+s.GatewayURL[len("http"):]+"/ws", u.Token, nil); err == nil {
			t.Fatal("a new socket with the revoked token was accepted")
		}
	})
}

func status(err error) int {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
	}
}

// TestARestartedServiceRefusesTokensRevokedBeforeIt: the notice of a
// logout reaches the replicas running at the time; one that starts later
// learns it from auth's list of revocations in force, and refuses the
// session's still unexpired access token.
func TestARestartedServiceRefusesTokensRevokedBeforeIt(t *testing.T) {
	s := stack(t, "local")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := newUser(t, s, "rst")
	revoked := u.Token
	other, err := client.New(s.GatewayURL).Login(ctx, u.Username, u.Password) // a second session, kept
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Logout(ctx); err != nil { // the first session
		t.Fatal(err)
	}

	msg := s.App("message")
	path, err := s.DaprdPath(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Restart(ctx, path); err != nil {
		t.Fatalf("restart message: %v", err)
	}
	// Straight to the restarted app, past the gateway (which heard the notice).
	rooms := func(token string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, msg.URL()+"/api/v1/rooms", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("dapr-api-token", s.Tokens.App) // as its sidecar would
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	within(t, 20*time.Second, "the restarted message service to refuse the revoked session's token", func() bool {
		return rooms(revoked) == http.StatusUnauthorized
	})
	if st := rooms(other.AccessToken); st != http.StatusOK {
		t.Fatalf("the live session's token: %d, want 200", st)
	}
}
