package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// TestWebSocketHandshakeThroughTheGateway: the browser way (token in
// Sec-WebSocket-Protocol, papo.v1 chosen) and the header way both open a
// socket; a bad or missing token is 401 and a foreign Origin 403, before
// any upgrade.
func TestWebSocketHandshakeThroughTheGateway(t *testing.T) {
	s := stack(t, "local")
	u := newUser(t, s, "shake")
	url := "ws" + strings.TrimPrefix(s.GatewayURL, "http") + "/ws"
	dial := func(token string, opts *client.WSOptions) (*client.WS, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return client.DialWS(ctx, url, token, opts)
	}
	statusOf := func(err error) int {
		var e *client.Error
		if errors.As(err, &e) {
			return e.Status
		}
		return 0
	}

	ws, err := dial(u.Token, &client.WSOptions{Origin: s.GatewayURL})
	if err != nil {
		t.Fatalf("browser-style handshake from the gateway's origin: %v", err)
	}
	if ws.Subprotocol != api.Subprotocol || ws.Hello.UserID != u.ID {
		t.Fatalf("subprotocol %q, hello %+v; want %q and user %s", ws.Subprotocol, ws.Hello, api.Subprotocol, u.ID)
	}
	ws.Close()

	ws, err = dial(u.Token, &client.WSOptions{AuthorizationHeader: true})
	if err != nil {
		t.Fatalf("Authorization-header handshake: %v", err)
	}
	ws.Close()

	if _, err := dial(u.Token, &client.WSOptions{Origin: "https://evil.example"}); statusOf(err) != http.StatusForbidden {
		t.Fatalf("foreign origin: %v, want 403", err)
	}
	if _, err := dial("not.a.token", nil); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("bad token: %v, want 401", err)
	}
	if _, err := dial("", nil); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("no token: %v, want 401", err)
	}
	// The token is never taken from the query string.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayURL+"/ws?access_token="+u.Token, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token in the query string: %d, want 401", resp.StatusCode)
	}
}
