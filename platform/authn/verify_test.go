package authn_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/invoke"
)

var cfg = authn.Config{Issuer: "papo", Audience: "papo", Leeway: 5 * time.Second}

type signer struct {
	kid  string
	priv crypto.Signer
}

func newEd(t *testing.T, kid string) signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, priv: priv}
}

func baseClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": "papo", "aud": "papo", "sub": "u1", "sid": "s1", "jti": "j1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()}
}

func (s signer) sign(t *testing.T, method jwt.SigningMethod, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = s.kid
	tok.Header["typ"] = authn.TokenType
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	str, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

func (s signer) keys() authn.StaticKeys { return authn.StaticKeys{s.kid: s.priv.Public()} }

func expectCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("token accepted, want %s", code)
	}
	if got := apierror.CodeOf(err); got != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

func TestVerifyRefusesUnsafeAlgorithms(t *testing.T) {
	ed := newEd(t, "k1")
	v := authn.NewVerifier(cfg, ed.keys())
	claims := baseClaims()

	t.Run("none", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
		tok.Header["kid"], tok.Header["typ"] = "k1", authn.TokenType
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), s)
		expectCode(t, err, "invalid_token")
	})
	t.Run("HS256 keyed with the public key", func(t *testing.T) {
		// The classic confusion attack: HMAC with the public key bytes.
		pub := ed.priv.Public().(ed25519.PublicKey)
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tok.Header["kid"], tok.Header["typ"] = "k1", authn.TokenType
		s, err := tok.SignedString([]byte(pub))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), s)
		expectCode(t, err, "invalid_token")
	})
	t.Run("RS256 is not on the list for papo tokens", func(t *testing.T) {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rs := signer{kid: "r1", priv: rk}
		v := authn.NewVerifier(cfg, rs.keys())
		_, err = v.Verify(context.Background(), rs.sign(t, jwt.SigningMethodRS256, claims, nil))
		expectCode(t, err, "invalid_token")
	})
	t.Run("unknown alg header", func(t *testing.T) {
		good := ed.sign(t, jwt.SigningMethodEdDSA, claims, nil)
		parts := strings.Split(good, ".")
		parts[0] = b64json(t, map[string]any{"alg": "XYZ512", "kid": "k1", "typ": authn.TokenType})
		_, err := v.Verify(context.Background(), strings.Join(parts, "."))
		expectCode(t, err, "invalid_token")
	})
	t.Run("ES256 is accepted", func(t *testing.T) {
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		es := signer{kid: "e1", priv: ek}
		if _, err := authn.NewVerifier(cfg, es.keys()).Verify(context.Background(), es.sign(t, jwt.SigningMethodES256, claims, nil)); err != nil {
			t.Fatal(err)
		}
	})
}

func b64json(t *testing.T, v any) string {
	t.Helper()
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyChecksClaimsAndHeader(t *testing.T) {
	ed := newEd(t, "k1")
	v := authn.NewVerifier(cfg, ed.keys())
	now := time.Now()
	for _, tc := range []struct {
		name   string
		mutate func(jwt.MapClaims)
		header map[string]any
	}{
		{"wrong issuer", func(c jwt.MapClaims) { c["iss"] = "evil" }, nil},
		{"no issuer", func(c jwt.MapClaims) { delete(c, "iss") }, nil},
		{"wrong audience", func(c jwt.MapClaims) { c["aud"] = "other" }, nil},
		{"no audience", func(c jwt.MapClaims) { delete(c, "aud") }, nil},
		{"expired beyond the leeway", func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }, nil},
		{"no exp", func(c jwt.MapClaims) { delete(c, "exp") }, nil},
		{"not yet valid", func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }, nil},
		{"issued in the future", func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }, nil},
		{"no sid", func(c jwt.MapClaims) { delete(c, "sid") }, nil},
		{"no sub", func(c jwt.MapClaims) { delete(c, "sub") }, nil},
		{"typ JWT instead of at+jwt", nil, map[string]any{"typ": "JWT"}},
		{"no kid", nil, map[string]any{"kid": nil}},
		{"unknown kid", nil, map[string]any{"kid": "k9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseClaims()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			_, err := v.Verify(context.Background(), ed.sign(t, jwt.SigningMethodEdDSA, c, tc.header))
			expectCode(t, err, "invalid_token")
		})
	}
	t.Run("expired within the leeway is accepted", func(t *testing.T) {
		c := baseClaims()
		c["exp"] = now.Add(-2 * time.Second).Unix()
		if _, err := v.Verify(context.Background(), ed.sign(t, jwt.SigningMethodEdDSA, c, nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("audience list containing papo is accepted", func(t *testing.T) {
		c := baseClaims()
		c["aud"] = []string{"other", "papo"}
		if _, err := v.Verify(context.Background(), ed.sign(t, jwt.SigningMethodEdDSA, c, nil)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestVerifyRefusesRevokedSessions(t *testing.T) {
	ed := newEd(t, "k1")
	revs := authn.NewRevocations()
	v := authn.NewVerifier(cfg, ed.keys(), authn.WithRevocations(revs))
	tok := ed.sign(t, jwt.SigningMethodEdDSA, baseClaims(), nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	revs.Revoke("s1", time.Now().Add(time.Minute))
	_, err := v.Verify(context.Background(), tok)
	expectCode(t, err, "session_revoked")
}

func TestRevocationsExpireAndArePruned(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	revs := authn.NewRevocationsAt(func() time.Time { return now })
	revs.Revoke("a", now.Add(time.Minute))
	revs.Revoke("b", now.Add(time.Hour))
	revs.Revoke("past", now.Add(-time.Second)) // already irrelevant: not kept
	if !revs.Revoked("a") || !revs.Revoked("b") || revs.Revoked("past") || revs.Len() != 2 {
		t.Fatalf("after revoking: a=%v b=%v past=%v len=%d", revs.Revoked("a"), revs.Revoked("b"), revs.Revoked("past"), revs.Len())
	}
	now = now.Add(2 * time.Minute)
	if revs.Revoked("a") {
		t.Fatal("a is still revoked after its until")
	}
	revs.Revoke("c", now.Add(time.Minute)) // prunes
	if revs.Len() != 2 {
		t.Fatalf("got %d entries after pruning, want 2 (b, c)", revs.Len())
	}
	if _, err := revs.Apply([]byte(`{"session_id":"d","user_id":"u","until":"` + now.Add(time.Minute).Format(time.RFC3339) + `"}`)); err != nil || !revs.Revoked("d") {
		t.Fatalf("Apply: %v", err)
	}
	for _, bad := range []string{`{`, `{"session_id":"x"}`, `{"until":"2030-01-01T00:00:00Z"}`} {
		if _, err := revs.Apply([]byte(bad)); err == nil {
			t.Fatalf("Apply(%s) accepted", bad)
		}
	}
}

func TestRemoteKeysRefetchOnUnknownKidAtMostOncePerInterval(t *testing.T) {
	k1, k2 := newEd(t, "k1"), newEd(t, "k2")
	var published atomic.Value
	published.Store([]signer{k1})
	now := time.Unix(1_700_000_000, 0)
	var fetches atomic.Int32
	keys := authn.NewFetchedKeys(func(context.Context) ([]byte, error) {
		fetches.Add(1)
		return jwksOf(t, published.Load().([]signer)...), nil
	}, authn.RemoteKeysOptions{MinRefetch: 10 * time.Second, MaxAge: time.Hour, Now: func() time.Time { return now }})
	ctx := context.Background()

	if _, err := keys.Key(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Key(ctx, "k1"); err != nil || fetches.Load() != 1 {
		t.Fatalf("a known kid refetched: %d fetches, err %v", fetches.Load(), err)
	}
	// A flood of unknown kids right after a fetch triggers no fetch.
	for range 100 {
		if _, err := keys.Key(ctx, "forged"); !errors.Is(err, authn.ErrUnknownKey) {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("unknown kids caused %d fetches within the interval, want 1 in all", n)
	}
	// Rotation: k2 appears; once the interval has passed, its first
	// token triggers one fetch and verifies.
	published.Store([]signer{k2, k1})
	now = now.Add(11 * time.Second)
	if _, err := keys.Key(ctx, "k2"); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("got %d fetches, want 2", n)
	}
}

// TestRemoteKeysCallersDuringTheFirstFetchWaitForIt: a burst of tokens
// arriving while the first fetch is in flight (ws after a restart) must
// wait for that fetch, not be refused as an unknown kid.
func TestRemoteKeysCallersDuringTheFirstFetchWaitForIt(t *testing.T) {
	k1 := newEd(t, "k1")
	started, release := make(chan struct{}), make(chan struct{})
	keys := authn.NewFetchedKeys(func(context.Context) ([]byte, error) {
		close(started)
		<-release
		return jwksOf(t, k1), nil
	}, authn.RemoteKeysOptions{MinRefetch: time.Minute})
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := keys.Key(ctx, "k1"); first <- err }()
	<-started
	second := make(chan error, 1)
	go func() { _, err := keys.Key(ctx, "k1"); second <- err }()
	select {
	case err := <-second:
		t.Fatalf("a caller during the first fetch returned before it ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	for _, c := range []chan error{first, second} {
		if err := <-c; err != nil {
			t.Fatalf("Key(k1): %v", err)
		}
	}
	if n := keys.Fetches(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestRemoteKeysKeepAStaleSetWhenTheIssuerIsDown(t *testing.T) {
	k1 := newEd(t, "k1")
	now := time.Unix(1_700_000_000, 0)
	var down atomic.Bool
	keys := authn.NewFetchedKeys(func(context.Context) ([]byte, error) {
		if down.Load() {
			return nil, errors.New("connection refused")
		}
		return jwksOf(t, k1), nil
	}, authn.RemoteKeysOptions{MinRefetch: time.Second, MaxAge: time.Minute, Now: func() time.Time { return now }})
	if _, err := keys.Key(context.Background(), "k1"); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	now = now.Add(2 * time.Minute)
	if _, err := keys.Key(context.Background(), "k1"); err != nil {
		t.Fatalf("stale key refused while the issuer is down: %v", err)
	}
	// With no keys at all, an outage is Unavailable (503), not a 401.
	empty := authn.NewFetchedKeys(func(context.Context) ([]byte, error) { return nil, errors.New("down") }, authn.RemoteKeysOptions{})
	v := authn.NewVerifier(cfg, empty)
	_, err := v.Verify(context.Background(), k1.sign(t, jwt.SigningMethodEdDSA, baseClaims(), nil))
	if apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("got %v, want an Unavailable error", err)
	}
}

func jwksOf(t *testing.T, signers ...signer) []byte {
	t.Helper()
	var set authn.JWKSet
	for _, s := range signers {
		j, err := authn.PublicJWK(s.kid, s.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j)
	}
	b, _ := json.Marshal(set)
	return b
}

func TestParseJWKSRoundTripsAndRefusesWeakKeys(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ed := newEd(t, "ed")
	b := jwksOf(t, ed, signer{kid: "ec", priv: ek}, signer{kid: "rsa", priv: rk})
	keys, err := authn.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("got %d keys", len(keys))
	}
	if !keys["ec"].(*ecdsa.PublicKey).Equal(ek.Public()) || !keys["rsa"].(*rsa.PublicKey).Equal(rk.Public()) {
		t.Fatal("keys differ after a round trip")
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := authn.ParseJWKS(jwksOf(t, signer{kid: "weak", priv: weak})); err == nil {
		t.Fatal("a 1024-bit RSA key was accepted")
	}
	offCurve := `{"keys":[{"kty":"EC","crv":"P-256","kid":"x","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`
	if _, err := authn.ParseJWKS([]byte(offCurve)); err == nil {
		t.Fatal("a point off the curve was accepted")
	}
	if _, err := authn.ParseJWKS([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`)); err == nil {
		t.Fatal("a symmetric key was accepted")
	}
}

// sidecar fakes the Dapr sidecar's invocation API in front of handler,
// listening on 127.0.0.1, and returns an invoke.Client for it.
func sidecar(t *testing.T, appID string, handler http.Handler) *invoke.Client {
	t.Helper()
	prefix := "/v1.0/invoke/" + appID + "/method"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			http.Error(w, "no such app", http.StatusInternalServerError)
			return
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, prefix)
		r.URL.RawPath = ""
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	return invoke.New(port, "")
}

func TestRemoteKeysFetchTheJWKSThroughInvocation(t *testing.T) {
	ed := newEd(t, "k1")
	inv := sidecar(t, "auth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != authn.JWKSPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwksOf(t, ed))
	}))
	v := authn.NewVerifier(cfg, authn.NewRemoteKeys(inv, "auth", authn.RemoteKeysOptions{}))
	if _, err := v.Verify(context.Background(), ed.sign(t, jwt.SigningMethodEdDSA, baseClaims(), nil)); err != nil {
		t.Fatal(err)
	}
}

// TestRemoteKeysDoNotPassOnWhatTheSidecarSaid: a sidecar's own error
// names internal addresses; a client reading keys_unavailable must not
// see them.
func TestRemoteKeysDoNotPassOnWhatTheSidecarSaid(t *testing.T) {
	inv := sidecar(t, "auth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"errorCode":"ERR_DIRECT_INVOKE","message":"fail to invoke, id: auth, err: dial tcp 10.1.2.3:50002: connection refused"}`))
	}))
	ed := newEd(t, "k1")
	v := authn.NewVerifier(cfg, authn.NewRemoteKeys(inv, "auth", authn.RemoteKeysOptions{}))
	_, err := v.Verify(context.Background(), ed.sign(t, jwt.SigningMethodEdDSA, baseClaims(), nil))
	expectCode(t, err, "keys_unavailable")
	if strings.Contains(err.Error(), "10.1.2.3") || strings.Contains(err.Error(), "ERR_DIRECT_INVOKE") {
		t.Fatalf("the error %q passes on the sidecar's answer", err)
	}
}

func TestRemoteSessionsCheck(t *testing.T) {
	inv := sidecar(t, "auth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case authn.SessionsPath + "live":
			_ = json.NewEncoder(w).Encode(authn.SessionStatus{SessionID: "live", UserID: "u1", Active: true})
		case authn.SessionsPath + "revoked":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"session_revoked","message":"revoked"}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such session"}}`))
		}
	}))
	s := authn.NewRemoteSessions(inv, "auth")
	ctx := context.Background()
	if err := s.Check(ctx, "live"); err != nil {
		t.Fatalf("live: %v", err)
	}
	for _, sid := range []string{"revoked", "unknown", ""} {
		expectCode(t, s.Check(ctx, sid), "session_revoked")
	}
	if err := s.Check(ctx, authn.ExternalSessionPrefix+"abc"); err != nil {
		t.Fatalf("external session: %v", err)
	}
	down := authn.NewRemoteSessions(invoke.New("1", ""), "auth")
	if err := down.Check(ctx, "live"); apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("auth unreachable: got %v, want Unavailable (not a revocation)", err)
	}
}

// TestTrustedIssuerTokensAreAccepted runs an external issuer's JWKS on a
// real local HTTP server, as Keycloak would publish it.
func TestTrustedIssuerTokensAreAccepted(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := signer{kid: "kc-1", priv: rk}
	var jwksHits atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jwksHits.Add(1)
		_, _ = w.Write(jwksOf(t, idp))
	})}}
	srv.Start()
	t.Cleanup(srv.Close)

	cfgs, err := authn.ParseTrustedIssuers(`[{"issuer":"https://kc.example/realms/papo","jwks_url":"` + srv.URL + `/certs","audience":"papo-api"}]`)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &fakeResolver{}
	local := newEd(t, "local")
	v := authn.NewVerifier(cfg, local.keys(), authn.WithTrustedIssuers(authn.NewTrustedIssuers(cfgs, nil, authn.RemoteKeysOptions{}), resolver))
	ext := func(mutate func(jwt.MapClaims)) string {
		c := baseClaims()
		c["iss"], c["aud"], c["sub"], c["sid"] = "https://kc.example/realms/papo", "papo-api", "kc-user-1", "kc-session"
		c["preferred_username"] = "Maria.Silva"
		if mutate != nil {
			mutate(c)
		}
		return idp.sign(t, jwt.SigningMethodRS256, c, map[string]any{"typ": "JWT"})
	}
	ctx := context.Background()
	c, err := v.Verify(ctx, ext(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "local-kc-user-1" || !authn.IsExternalSession(c.SessionID) || c.Issuer != "https://kc.example/realms/papo" {
		t.Fatalf("claims %+v", c)
	}
	if got := resolver.last.Load().(authn.ExternalIdentity); got.Username != "Maria.Silva" || got.Subject != "kc-user-1" {
		t.Fatalf("resolver got %+v", got)
	}
	c2, _ := v.Verify(ctx, ext(nil))
	if c2.SessionID != c.SessionID {
		t.Fatal("one external session maps to two local session ids")
	}
	if jwksHits.Load() != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (cached)", jwksHits.Load())
	}
	for name, mutate := range map[string]func(jwt.MapClaims){
		"wrong audience": func(c jwt.MapClaims) { c["aud"] = "papo" },
		"expired":        func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() },
		"no sub":         func(c jwt.MapClaims) { delete(c, "sub") },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(ctx, ext(mutate))
			expectCode(t, err, "invalid_token")
		})
	}
	t.Run("an untrusted issuer with a valid signature", func(t *testing.T) {
		_, err := v.Verify(ctx, ext(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }))
		expectCode(t, err, "invalid_token")
	})
	t.Run("HS256 claiming the trusted issuer", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://kc.example/realms/papo", "aud": "papo-api",
			"sub": "x", "exp": time.Now().Add(time.Minute).Unix()})
		tok.Header["kid"] = "kc-1"
		s, _ := tok.SignedString([]byte("secret"))
		_, err := v.Verify(ctx, s)
		expectCode(t, err, "invalid_token")
	})
	t.Run("a token signed by the IdP key but claiming papo as issuer", func(t *testing.T) {
		_, err := v.Verify(ctx, ext(func(c jwt.MapClaims) { c["iss"] = "papo"; c["aud"] = "papo" }))
		expectCode(t, err, "invalid_token")
	})
}

type fakeResolver struct{ last atomic.Value }

func (f *fakeResolver) ResolveIdentity(_ context.Context, id authn.ExternalIdentity) (api.User, error) {
	f.last.Store(id)
	return api.User{ID: "local-" + id.Subject, Username: "x"}, nil
}

func TestParseTrustedIssuersRefusesBadConfig(t *testing.T) {
	for _, s := range []string{
		`{`,
		`[{"issuer":"a","jwks_url":"ftp://x/keys","audience":"b"}]`,
		`[{"issuer":"a","jwks_url":"https://x/keys"}]`,
		`[{"issuer":"a","jwks_url":"https://x/keys","audience":"b"},{"issuer":"a","jwks_url":"https://y/keys","audience":"b"}]`,
	} {
		if _, err := authn.ParseTrustedIssuers(s); err == nil {
			t.Errorf("accepted %s", s)
		}
	}
	if list, err := authn.ParseTrustedIssuers(""); err != nil || list != nil {
		t.Fatalf("empty: %v %v", list, err)
	}
}

// TestAVerifiedTokenIsRememberedButStillExpiresAndRevokes: a client's
// second request with the same token costs no signature verification,
// yet the token still stops at its expiry, at its session's revocation
// and when its key leaves the key set; a different token is verified.
func TestAVerifiedTokenIsRememberedButStillExpiresAndRevokes(t *testing.T) {
	ctx := context.Background()
	ed := newEd(t, "k1")
	keys := ed.keys()
	revs := authn.NewRevocations()
	v := authn.NewVerifier(authn.Config{Issuer: "papo", Audience: "papo"}, keys, authn.WithRevocations(revs))

	claims := baseClaims()
	claims["exp"] = time.Now().Add(1500 * time.Millisecond).Unix()
	tok := ed.sign(t, jwt.SigningMethodEdDSA, claims, nil)
	for range 5 {
		if c, err := v.Verify(ctx, tok); err != nil || c.UserID != "u1" || c.SessionID != "s1" {
			t.Fatalf("verify: %+v, %v", c, err)
		}
	}
	if n := v.Signatures(); n != 1 {
		t.Fatalf("five requests with one token verified %d signatures, want 1", n)
	}

	// Another session's token is verified on its own.
	other := baseClaims()
	other["sid"] = "s2"
	tok2 := ed.sign(t, jwt.SigningMethodEdDSA, other, nil)
	if _, err := v.Verify(ctx, tok2); err != nil || v.Signatures() != 2 {
		t.Fatalf("a second token: %v, %d signatures", err, v.Signatures())
	}
	revs.Revoke("s2", time.Now().Add(time.Hour))
	_, err := v.Verify(ctx, tok2)
	expectCode(t, err, "session_revoked")

	// The key is rotated out: the remembered token goes with it.
	delete(keys, "k1")
	_, err = v.Verify(ctx, tok)
	expectCode(t, err, "invalid_token")
	keys["k1"] = ed.priv.Public()
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("the key is back: %v", err)
	}

	// And it expires (no leeway here) although it is remembered.
	time.Sleep(time.Until(time.Unix(claims["exp"].(int64), 0)) + 50*time.Millisecond)
	_, err = v.Verify(ctx, tok)
	expectCode(t, err, "invalid_token")
}

// countingKeys counts the key lookups a Verifier makes.
type countingKeys struct {
	authn.StaticKeys
	calls atomic.Int64
}

func (k *countingKeys) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	k.calls.Add(1)
	return k.StaticKeys.Key(ctx, kid)
}

func TestTokensOverTheSizeCapAreRefusedBeforeParsing(t *testing.T) {
	s := newEd(t, "k1")
	// A correctly signed token that only its size makes unacceptable:
	// padding in a claim of its own.
	token := func(size int) string {
		t.Helper()
		c := baseClaims()
		c["pad"] = ""
		base := len(s.sign(t, jwt.SigningMethodEdDSA, c, nil))
		c["pad"] = strings.Repeat("a", (size-base)*3/4)
		tok := s.sign(t, jwt.SigningMethodEdDSA, c, nil)
		for len(tok) < size {
			c["pad"] = c["pad"].(string) + "a"
			tok = s.sign(t, jwt.SigningMethodEdDSA, c, nil)
		}
		return tok
	}
	for _, tc := range []struct {
		name  string
		token string
		code  string
	}{
		{"a signed token at the cap verifies", token(api.MaxTokenBytes - 3), ""},
		{"a signed token over the cap is invalid", token(api.MaxTokenBytes + 1), "invalid_token"},
		{"a header of dots over the cap is invalid", strings.Repeat(".", 1<<20), "invalid_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code != "" && len(tc.token) <= api.MaxTokenBytes {
				t.Fatalf("test token is %d bytes, not over the cap", len(tc.token))
			}
			keys := &countingKeys{StaticKeys: s.keys()}
			v := authn.NewVerifier(cfg, keys)
			_, err := v.Verify(context.Background(), tc.token)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("got %v, want the token accepted", err)
				}
				return
			}
			expectCode(t, err, tc.code)
			if n := keys.calls.Load(); n != 0 {
				t.Fatalf("the verifier looked up %d keys for an oversized token; want it refused before parsing", n)
			}
		})
	}
}
