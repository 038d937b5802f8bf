package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/sidecar"
)

// The adversarial suite: what a user with a free account, or a process
// that reaches a port, tries against the real stack (issue 13).

// raw sends a request line exactly as given (curl --path-as-is) to base
// and returns the status and body.
func raw(t *testing.T, base, method, target string, header map[string]string, body string) (int, string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, u.Host)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

func errCode(body string) string {
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &eb)
	return eb.Error.Code
}

// daprMetadata reports whether body is a Dapr sidecar's metadata answer.
func daprMetadata(body string) bool {
	return strings.Contains(body, "runtimeVersion") || strings.Contains(body, `"components"`) || strings.Contains(body, "enabledFeatures")
}

// TestNoPathFromAClientToADaprAPI replays the reproductions
// through the real gateway: a logged-in user must reach neither the
// gateway sidecar's own API nor another app by a header.
func TestNoPathFromAClientToADaprAPI(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	victim := newUser(t, s, "victim")
	room, err := victim.CreateRoom(ctx, randomName("edge-"), "private")
	if err != nil {
		t.Fatal(err)
	}
	attacker := newUser(t, s, "attacker")
	auth := map[string]string{"Authorization": "Bearer " + attacker.Token}
	forged, _ := json.Marshal(events.SubmissionBatch{Submissions: []events.Submission{{
		Type: "message", RoomID: room.ID, SenderID: victim.ID, ClientID: randomName("forged-"), Text: "forged", SentAt: time.Now().UTC(),
	}}})

	t.Run("the reproductions are refused with 400 invalid_path", func(t *testing.T) {
		up := "/api/v1/rooms/../../../../../../.."
		for _, c := range []struct{ method, target, body string }{
			{"GET", up + "/v1.0/metadata", ""},
			{"POST", up + "/v1.0/publish/pubsub/messages.submitted", string(forged)},
			{"POST", up + "/v1.0/shutdown", ""},
			{"GET", "/api/v1/rooms/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/v1.0/metadata", ""},
			{"GET", "/api/v1/rooms/..%2f..%2f..%2f..%2f..%2f..%2f..%2fv1.0%2fmetadata", ""},
		} {
			st, body := raw(t, s.GatewayURL, c.method, c.target, auth, c.body)
			if st != http.StatusBadRequest || errCode(body) != "invalid_path" || daprMetadata(body) {
				t.Errorf("%s %s: %d %.200s, want 400 invalid_path", c.method, c.target, st, body)
			}
		}
		// The gateway's sidecar is still up: the shutdown did not happen.
		if _, err := attacker.Me(ctx); err != nil {
			t.Fatalf("after the attempts: %v", err)
		}
	})

	t.Run("traversal and encoded traversal on every proxied prefix", func(t *testing.T) {
		prefixes := []string{
			"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/jwks", "/api/v1/auth/logout",
			"/api/v1/me", "/api/v1/users", "/api/v1/users/" + victim.ID, "/api/v1/rooms", "/api/v1/rooms/" + room.ID + "/events",
			"/api/v1/rooms/" + room.ID + "/notifications", "/api/v1/dms", "/api/v1/presence", "/api/v1/devices", "/api/v1/devices/d1", "/ws",
		}
		travs := []string{
			"/../../../../../../../../v1.0/metadata", "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/v1.0/metadata",
			"/..%2F..%2F..%2F..%2F..%2F..%2F..%2Fv1.0%2Fmetadata", "/%252e%252e/%252e%252e/v1.0/metadata",
			"/..%5c..%5c..%5cv1.0%5cmetadata", "//v1.0/metadata", "/./v1.0/metadata",
		}
		for _, p := range prefixes {
			for _, tr := range travs {
				st, body := raw(t, s.GatewayURL, "GET", p+tr, auth, "")
				if st != http.StatusBadRequest || errCode(body) != "invalid_path" {
					t.Errorf("GET %s: %d %.200s, want 400 invalid_path", p+tr, st, body)
				}
			}
		}
	})

	t.Run("/v1.0/* at the gateway is not the sidecar's API", func(t *testing.T) {
		for _, target := range []string{"/v1.0/metadata", "/v1.0/healthz", "/v1.0/invoke/auth/method/internal/v1/revocations"} {
			for _, h := range []map[string]string{auth, {"Authorization": auth["Authorization"], "dapr-app-id": "auth"}} {
				st, body := raw(t, s.GatewayURL, "GET", target, h, "")
				if daprMetadata(body) || strings.Contains(body, "session_id") || st == http.StatusNoContent {
					t.Errorf("GET %s %v: %d %.200s reached Dapr", target, h, st, body)
				}
			}
		}
	})

	t.Run("Dapr headers from the client do not steer the call", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"dapr-app-id": "auth"},
			{"dapr-app-id": "presence", "dapr-api-token": "guess", "dapr-callee-app-id": "auth"},
		} {
			hdr := map[string]string{"Authorization": auth["Authorization"]}
			for k, v := range h {
				hdr[k] = v
			}
			st, body := raw(t, s.GatewayURL, "GET", "/api/v1/rooms", hdr, "")
			if st != http.StatusOK || !strings.Contains(body, `"rooms"`) {
				t.Errorf("%v: %d %.200s, want the message service's room list", h, st, body)
			}
		}
	})
}

// forwardedAs makes a client whose requests come from addr as far as the
// gateway can tell: the e2e stack trusts 127.0.0.1 as a proxy
// (GATEWAY_TRUSTED_PROXIES), so X-Forwarded-For names the client.
func forwardedAs(base, addr string) *client.Client {
	c := client.New(base)
	c.HTTP.Transport = forwardFor{addr: addr, next: http.DefaultTransport}
	return c
}

type forwardFor struct {
	addr string
	next http.RoundTripper
}

func (f forwardFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return f.next.RoundTrip(r)
}

// TestRefusedRequestsDoNotTakeARouteDown: fifty refused requests of each
// kind from one client, then one good request of the same kind from
// another client, which must succeed at once. With daprd's circuit
// breakers on service invocation, ten failures in a row opened the route
// for 15 s for everyone.
func TestRefusedRequestsDoNotTakeARouteDown(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	attackerAddr, victimAddr := "198.51.100."+strconv.Itoa(1+int(time.Now().UnixNano()%200)), "203.0.113.7"

	victim := forwardedAs(s.GatewayURL, victimAddr)
	name := randomName("owner")
	pw := "correct horse " + name
	if _, err := victim.Register(ctx, name, pw, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := victim.Login(ctx, name, pw); err != nil {
		t.Fatal(err)
	}
	room, err := victim.CreateRoom(ctx, randomName("private-"), "private")
	if err != nil {
		t.Fatal(err)
	}
	attacker := forwardedAs(s.GatewayURL, attackerAddr)
	aname := randomName("mallory")
	if _, err := attacker.Register(ctx, aname, "correct horse "+aname, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := attacker.Login(ctx, aname, "correct horse "+aname); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		refuse func() error // one refused request from the attacker
		good   func() error // one good request from the victim
	}{
		{"failed logins", func() error {
			_, err := forwardedAs(s.GatewayURL, attackerAddr).Login(ctx, randomName("nobody"), "wrong password")
			return err
		}, func() error {
			_, err := forwardedAs(s.GatewayURL, victimAddr).Login(ctx, name, pw)
			return err
		}},
		{"registrations of a taken name", func() error {
			_, err := attacker.Register(ctx, name, "another password", "")
			return err
		}, func() error {
			n := randomName("fresh")
			_, err := forwardedAs(s.GatewayURL, victimAddr).Register(ctx, n, "correct horse "+n, "")
			return err
		}},
		{"reads of a room one is not in", func() error {
			_, err := attacker.EventsAfter(ctx, room.ID, 0, 10)
			return err
		}, func() error {
			_, err := victim.EventsAfter(ctx, room.ID, 0, 10)
			return err
		}},
		{"rooms with an empty name", func() error {
			return attacker.Do(ctx, http.MethodPost, "/api/v1/rooms", map[string]string{"name": "", "kind": "public"}, nil)
		}, func() error {
			_, err := victim.CreateRoom(ctx, randomName("ok-"), "public")
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := range 50 {
				err := c.refuse()
				if st := status(err); st < 400 || st >= 500 {
					t.Fatalf("refused request %d: %v, want a 4xx", i+1, err)
				}
			}
			if err := c.good(); err != nil {
				t.Fatalf("the good request after 50 refused ones: %v", err)
			}
		})
	}
}

// TestInternalRoutesNeedTheAppToken calls the apps' own ports, past their
// sidecars: without the app API token daprd sends, nothing but the probes
// answers — internal routes, pub/sub deliveries and the subscription list
// included.
func TestInternalRoutesNeedTheAppToken(t *testing.T) {
	s := stack(t, "local")
	forged, _ := json.Marshal(map[string]any{"data": events.SubmissionBatch{Submissions: []events.Submission{{
		Type: "message", RoomID: "r1", SenderID: "u1", ClientID: "c1", Text: "forged"}}}})
	for _, c := range []struct{ app, method, path, body string }{
		{"auth", "GET", "/internal/v1/revocations", ""},
		{"auth", "GET", "/internal/v1/users/u1", ""},
		{"message", "GET", "/internal/v1/rooms/r1/members", ""},
		{"message", "POST", "/events/submitted", string(forged)},
		{"message", "GET", "/dapr/subscribe", ""},
		{"presence", "POST", "/internal/v1/presence/connect", `{}`},
		{"notification", "POST", "/events/room-events", `{}`},
		{"notification", "GET", "/dapr/subscribe", ""},
	} {
		app := s.App(c.app)
		if app == nil {
			t.Fatalf("no app %s", c.app)
		}
		st, body := raw(t, app.URL(), c.method, c.path, nil, c.body)
		if st != http.StatusUnauthorized || errCode(body) != "app_token_required" {
			t.Errorf("%s %s %s without the app token: %d %.200s, want 401 app_token_required", c.app, c.method, c.path, st, body)
		}
		st, body = raw(t, app.URL(), c.method, c.path, map[string]string{"dapr-api-token": "not-the-token"}, c.body)
		if st != http.StatusUnauthorized {
			t.Errorf("%s %s %s with a wrong token: %d %.200s, want 401", c.app, c.method, c.path, st, body)
		}
		if c.method == "GET" {
			st, body = raw(t, app.URL(), c.method, c.path, map[string]string{"dapr-api-token": s.Tokens.App}, "")
			if st == http.StatusUnauthorized {
				t.Errorf("%s %s %s with the app token: %d %.200s", c.app, c.method, c.path, st, body)
			}
		}
	}
	// Probes need no token. The stack is shared with tests that restart
	// services, and the gateway's /readyz counts every service: it may be
	// 503 for a moment after such a test, never 401.
	for _, a := range s.Apps("") {
		var st int
		eventually(t, 30*time.Second, a.Name+" /readyz answers 200 without a token", func() bool {
			st, _ = raw(t, a.URL(), "GET", "/readyz", nil, "")
			if st == http.StatusUnauthorized {
				t.Fatalf("%s /readyz without a token: 401", a.Name)
			}
			return st == http.StatusOK
		})
	}
	// A ws replica's /ws is public (an ingress may route to it): its guard
	// is the user's access token, checked before any upgrade.
	for _, a := range s.Apps("ws") {
		st, body := raw(t, a.URL(), "GET", "/ws", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket",
			"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, "")
		if st != http.StatusUnauthorized || errCode(body) != "missing_token" {
			t.Errorf("%s /ws without any token: %d %.200s, want 401 missing_token", a.Name, st, body)
		}
	}
}

// TestSidecarsNeedTheDaprToken calls every sidecar's API without the Dapr
// API token, over HTTP and gRPC.
func TestSidecarsNeedTheDaprToken(t *testing.T) {
	s := stack(t, "local")
	for _, a := range s.Apps("") {
		base := "http://127.0.0.1:" + strconv.Itoa(a.DaprHTTP)
		for _, path := range []string{"/v1.0/metadata", "/v1.0/invoke/message/method/healthz", "/v1.0/state/messagestore/k"} {
			if st, body := raw(t, base, "GET", path, nil, ""); st != http.StatusUnauthorized {
				t.Errorf("%s sidecar GET %s without the token: %d %.200s, want 401", a.Name, path, st, body)
			}
		}
		if st, _ := raw(t, base, "GET", "/v1.0/healthz", nil, ""); st != http.StatusNoContent {
			t.Errorf("%s sidecar health without the token: %d, want 204", a.Name, st)
		}
		c, err := sidecar.Client(strconv.Itoa(a.DaprGRPC), "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.PublishEvent(ctx, events.PubSub, events.TopicSubmitted, []byte(`{}`))
		cancel()
		c.Close()
		if code := grpcstatus.Code(errorsCause(err)); code != codes.Unauthenticated && code != codes.Unimplemented {
			t.Errorf("%s sidecar gRPC publish without the token: %v, want refused", a.Name, err)
		}
	}
}

// errorsCause unwraps the SDK's wrapping down to the gRPC status error.
func errorsCause(err error) error {
	for err != nil {
		if _, ok := grpcstatus.FromError(err); ok {
			return err
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
	return err
}

// TestEachSidecarServesOnlyWhatItsAppUses calls each sidecar's API with
// its token: the APIs the app does not use are not served, and pub/sub
// topics are open only to their publishers.
func TestEachSidecarServesOnlyWhatItsAppUses(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	httpCall := func(a *launcher.App, method, path, body string) int {
		st, _ := raw(t, "http://127.0.0.1:"+strconv.Itoa(a.DaprHTTP), method, path, map[string]string{"dapr-api-token": s.Tokens.Dapr}, body)
		return st
	}
	gw, authApp := s.App("gateway"), s.App("auth")
	t.Run("the gateway's sidecar serves service invocation only", func(t *testing.T) {
		if st := httpCall(gw, "GET", "/v1.0/invoke/message/method/healthz", ""); st != http.StatusOK {
			t.Errorf("invoke: %d, want 200", st)
		}
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/v1.0/metadata", ""},
			{"POST", "/v1.0/publish/pubsub/messages.submitted", `{}`},
			{"GET", "/v1.0/state/messagestore/k", ""},
			{"POST", "/v1.0/bindings/push", `{"operation":"post"}`},
			{"GET", "/v1.0/secrets/secretstore/auth-signing-keys", ""},
			{"GET", "/v1.0-alpha1/subscribe", ""},
		} {
			if st := httpCall(gw, c.method, c.path, c.body); st != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404 (not served)", c.method, c.path, st)
			}
		}
	})
	t.Run("auth's sidecar serves no HTTP API but health", func(t *testing.T) {
		if st := httpCall(authApp, "GET", "/v1.0/invoke/message/method/healthz", ""); st != http.StatusNotFound {
			t.Errorf("invoke: %d, want 404", st)
		}
		if st := httpCall(authApp, "GET", "/v1.0/metadata", ""); st != http.StatusNotFound {
			t.Errorf("metadata: %d, want 404", st)
		}
	})
	grpcCases := []struct {
		app     string
		call    string
		allowed bool
	}{
		{"gateway", "publish", false}, {"gateway", "state", false}, {"gateway", "metadata", false},
		{"auth", "state", true}, {"auth", "bindings", false}, {"auth", "metadata", false},
		{"message", "state", true}, {"message", "secrets", false}, {"message", "bindings", false},
		{"notification", "secrets", false}, {"presence", "bindings", false}, {"ws", "state", false}, {"ws", "secrets", false},
	}
	for _, c := range grpcCases {
		t.Run("gRPC "+c.call+" on "+c.app, func(t *testing.T) {
			a := s.App(c.app)
			if a == nil {
				a = s.Apps(c.app)[0]
			}
			dc, err := sidecar.Client(strconv.Itoa(a.DaprGRPC), s.Tokens.Dapr)
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			store := map[string]string{"auth": "authstore", "message": "messagestore"}[c.app]
			switch c.call {
			case "publish":
				err = dc.PublishEvent(cctx, events.PubSub, events.TopicSubmitted, []byte(`{}`))
			case "state":
				if store == "" {
					store = "messagestore"
				}
				_, err = dc.GetState(cctx, store, "papo.edge-test", nil)
			case "metadata":
				_, err = dc.GetMetadata(cctx)
			case "bindings":
				_, err = dc.InvokeBinding(cctx, &dapr.InvokeBindingRequest{Name: "push", Operation: "get"})
			case "secrets":
				_, err = dc.GetSecret(cctx, "secretstore", "auth-signing-keys", nil)
			}
			refused := grpcstatus.Code(errorsCause(err)) == codes.Unimplemented
			if c.allowed && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.allowed && !refused {
				t.Fatalf("served (%v), want Unimplemented", err)
			}
		})
	}
	t.Run("topics are open only to their publishers", func(t *testing.T) {
		for _, c := range []struct {
			app, pubsub, topic string
			allowed            bool
		}{
			{"ws-1", events.PubSub, events.TopicRoomEvents, false},
			{"ws-1", events.PubSub, events.TopicSessions, false},
			{"ws-1", events.Fanout, events.TopicRoomEvents, false},
			{"presence", events.PubSub, events.TopicSubmitted, false},
			{"notification", events.PubSub, events.TopicRoomEvents, false},
			{"message", events.PubSub, events.TopicSessions, false},
			{"message", events.PubSub, "not.a.topic", false},
			{"auth", events.PubSub, events.TopicSessions, true},
		} {
			a := s.App(c.app)
			dc, err := sidecar.Client(strconv.Itoa(a.DaprGRPC), s.Tokens.Dapr)
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			// A notice for a session nobody has: harmless if it went out.
			payload, _ := json.Marshal(events.SessionRevoked{SessionID: randomName("edge-"), UserID: "nobody", RevokedAt: time.Now(), Until: time.Now()})
			err = dc.PublishEvent(cctx, c.pubsub, c.topic, payload)
			cancel()
			dc.Close()
			if c.allowed && err != nil {
				t.Errorf("%s may not publish %s/%s: %v", c.app, c.pubsub, c.topic, err)
			}
			if !c.allowed && grpcstatus.Code(errorsCause(err)) != codes.PermissionDenied {
				t.Errorf("%s published %s/%s: %v, want PermissionDenied", c.app, c.pubsub, c.topic, err)
			}
		}
	})
}
