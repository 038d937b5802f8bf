package authn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/settings"
)

// serviceSidecar is a Dapr HTTP API with the outbound health check (ready
// once ready is set), and the app authApp publishing the JWKS of iss and
// mapping every external identity to the user local-1.
type serviceSidecar struct {
	ready  atomic.Bool
	probes atomic.Int32
	port   string
	// recent is auth's answer to RevocationsPath; the route fails while
	// recentDown is positive (counting down).
	recent     atomic.Value // string
	recentDown atomic.Int32
}

func newServiceSidecar(t *testing.T, iss *authntest.Issuer, authApp string) *serviceSidecar {
	t.Helper()
	sc := &serviceSidecar{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/healthz/outbound", func(w http.ResponseWriter, r *http.Request) {
		sc.probes.Add(1)
		if !sc.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1.0/invoke/"+authApp+"/method"+authn.JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(iss.JWKS())
	})
	sc.recent.Store(`{"revocations":[]}`)
	mux.HandleFunc("GET /v1.0/invoke/"+authApp+"/method"+authn.RevocationsPath, func(w http.ResponseWriter, r *http.Request) {
		if sc.recentDown.Add(-1) >= 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, sc.recent.Load().(string))
	})
	mux.HandleFunc("POST /v1.0/invoke/"+authApp+"/method"+authn.IdentitiesPath, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"user":{"id":"local-1","username":"ext-user"}}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	sc.port = u.Port()
	return sc
}

// countingSubscriber refuses every subscription, counting the attempts.
type countingSubscriber struct{ calls atomic.Int32 }

func (s *countingSubscriber) Subscribe(context.Context, dapr.SubscriptionOptions) (*dapr.Subscription, error) {
	s.calls.Add(1)
	return nil, errors.New("no stream in this test")
}

func baseFor(iss *authntest.Issuer, daprHTTPPort string) settings.Base {
	return settings.Base{DaprHTTPPort: daprHTTPPort, Issuer: iss.Config.Issuer, Audience: iss.Config.Audience, Leeway: time.Second}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// stopWithin calls stop, which returns once the follower has stopped.
func stopWithin(t *testing.T, stop func()) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the revocation follower did not stop within 5 s")
	}
}

func TestServiceVerifierChecksTokensWithTheAuthAppsKeysAndRefusesRevokedSessions(t *testing.T) {
	iss := authntest.New()
	sc := newServiceSidecar(t, iss, "auth-b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, stop, err := authn.StartServiceVerifier(ctx, baseFor(iss, sc.port), invoke.New(sc.port, ""), &countingSubscriber{}, quiet,
		authn.ServiceOptions{AuthApp: "auth-b"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := v.Verify(ctx, iss.Token("u1", "s1", time.Minute))
	if err != nil || c.UserID != "u1" {
		t.Fatalf("valid token: %+v, %v", c, err)
	}
	v.Revocations().Revoke("s1", time.Now().Add(time.Minute))
	_, err = v.Verify(ctx, iss.Token("u1", "s1", time.Minute))
	if e, ok := apierror.As(err); !ok || e.Code != "session_revoked" {
		t.Fatalf("token of a revoked session: %v, want session_revoked", err)
	}
	if _, err := v.Verify(ctx, authntest.New().Token("u1", "s2", time.Minute)); err == nil {
		t.Fatal("token signed by another key accepted")
	}
}

func TestServiceVerifierFollowsRevocationsOnlyOnceTheSidecarIsReadyUntilStopped(t *testing.T) {
	iss := authntest.New()
	sc := newServiceSidecar(t, iss, "auth")
	sub := &countingSubscriber{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, stop, err := authn.StartServiceVerifier(ctx, baseFor(iss, sc.port), invoke.New(sc.port, ""), sub, quiet, authn.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sidecar to be probed twice", func() bool { return sc.probes.Load() >= 2 })
	if n := sub.calls.Load(); n != 0 {
		t.Fatalf("subscribed %d times before the sidecar was ready", n)
	}
	sc.ready.Store(true)
	waitFor(t, "a subscription once the sidecar is ready", func() bool { return sub.calls.Load() >= 1 })

	stopWithin(t, stop)
	stop() // a second call returns at once
}

func TestServiceVerifierFollowerStopsWithItsContext(t *testing.T) {
	iss := authntest.New()
	sc := newServiceSidecar(t, iss, "auth")
	sc.ready.Store(true)
	sub := &countingSubscriber{}
	ctx, cancel := context.WithCancel(context.Background())
	_, stop, err := authn.StartServiceVerifier(ctx, baseFor(iss, sc.port), invoke.New(sc.port, ""), sub, quiet, authn.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a subscription", func() bool { return sub.calls.Load() >= 1 })
	cancel()
	// stop waits for the follower, which has already seen its context end.
	stopWithin(t, stop)
}

// TestServiceVerifierLearnsRevocationsMadeBeforeItStarted: the notices on
// sessions.revoked reach only running replicas, so a service that starts
// asks auth for the revocations still in force (retrying while auth does
// not answer) and refuses their tokens.
func TestServiceVerifierLearnsRevocationsMadeBeforeItStarted(t *testing.T) {
	iss := authntest.New()
	sc := newServiceSidecar(t, iss, "auth")
	sc.recent.Store(fmt.Sprintf(`{"revocations":[{"session_id":"s-old","user_id":"u1","revoked_at":%q,"until":%q}]}`,
		time.Now().Add(-time.Minute).Format(time.RFC3339), time.Now().Add(10*time.Minute).Format(time.RFC3339)))
	sc.recentDown.Store(2) // auth is not up yet
	sc.ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, stop, err := authn.StartServiceVerifier(ctx, baseFor(iss, sc.port), invoke.New(sc.port, ""), &countingSubscriber{}, quiet, authn.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation from before the start", func() bool { return v.Revocations().Revoked("s-old") })
	if _, err := v.Verify(ctx, iss.Token("u1", "s-old", time.Minute)); apierror.CodeOf(err) != "session_revoked" {
		t.Fatalf("token of a session revoked before the start: %v, want session_revoked", err)
	}
	if _, err := v.Verify(ctx, iss.Token("u1", "s-new", time.Minute)); err != nil {
		t.Fatalf("token of a live session: %v", err)
	}
	stopWithin(t, stop)
}

func TestServiceVerifierRefusesMalformedTrustedIssuers(t *testing.T) {
	iss := authntest.New()
	b := baseFor(iss, "1")
	b.TrustedIssuers = `[{"issuer":"x"}]`
	_, stop, err := authn.StartServiceVerifier(context.Background(), b, invoke.New("1", ""), &countingSubscriber{}, quiet, authn.ServiceOptions{})
	if err == nil || !strings.Contains(err.Error(), "AUTH_TRUSTED_ISSUERS") {
		t.Fatalf("got %v, want an AUTH_TRUSTED_ISSUERS error", err)
	}
	if stop != nil {
		t.Fatal("a follower was started despite the error")
	}
}

// TestServiceVerifierAcceptsTrustedIssuersTokens: with
// AUTH_TRUSTED_ISSUERS set, an external issuer's token is verified against
// its own JWKS and mapped to a local user by the auth app.
func TestServiceVerifierAcceptsTrustedIssuersTokens(t *testing.T) {
	papo, ext := authntest.New(), authntest.New()
	ext.Config.Issuer = "https://sso.example"
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(ext.JWKS())
	}))
	defer jwks.Close()
	sc := newServiceSidecar(t, papo, "auth")
	b := baseFor(papo, sc.port)
	b.TrustedIssuers = `[{"issuer":"https://sso.example","jwks_url":"` + jwks.URL + `","audience":"papo"}]`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, stop, err := authn.StartServiceVerifier(ctx, b, invoke.New(sc.port, ""), &countingSubscriber{}, quiet, authn.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := v.Verify(ctx, ext.Token("ext-sub", "ext-sid", time.Minute))
	if err != nil || c.UserID != "local-1" || !authn.IsExternalSession(c.SessionID) {
		t.Fatalf("external token: %+v, %v", c, err)
	}
}

// levels records the level of every log record.
type levels struct {
	mu  sync.Mutex
	got []slog.Level
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, r.Level)
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

// TestAStartingSidecarsRefusalsAreNotWarnings: the first failures to
// subscribe (a sidecar still starting) are logged at debug level; a
// failure that persists is a warning.
func TestAStartingSidecarsRefusalsAreNotWarnings(t *testing.T) {
	rec := &levels{}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		authn.FollowRevocations(ctx, &countingSubscriber{}, authn.NewRevocations(), slog.New(rec), nil)
	}()
	// Six failures take 100+200+400+800+1600 ms of backoff; a loaded
	// machine may take longer, so poll for them rather than time them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.got)
		rec.mu.Unlock()
		if n >= 6 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("%d failures logged in 30 s, want at least 6", n)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
	cancel()
	<-stopped
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, l := range rec.got {
		want := slog.LevelDebug
		if i >= 5 {
			want = slog.LevelWarn
		}
		if l != want {
			t.Fatalf("failure %d logged at %v, want %v (all: %v)", i+1, l, want, rec.got)
		}
	}
}
