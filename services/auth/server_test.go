package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/auth/internal/account"
	"github.com/papochat/papo/services/auth/internal/keys"
	"github.com/papochat/papo/services/auth/internal/password"
	"github.com/papochat/papo/services/auth/internal/session"
	"github.com/papochat/papo/services/auth/internal/signing"
	"github.com/papochat/papo/services/auth/internal/throttle"
)

// recorder is an in-memory session.Publisher that remembers what it was
// told, as the pub/sub component would carry it.
type recorder struct {
	mu     sync.Mutex
	events []events.SessionRevoked
}

func (r *recorder) PublishRevoked(_ context.Context, ev events.SessionRevoked) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) revoked() []events.SessionRevoked {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.SessionRevoked(nil), r.events...)
}

// hasher is shared: building one hashes the dummy password once.
var (
	hasherOnce sync.Once
	hasher     *password.Hasher
)

func testHasher(t *testing.T) *password.Hasher {
	t.Helper()
	hasherOnce.Do(func() {
		var err error
		if hasher, err = password.NewHasher(password.Default, 4); err != nil {
			panic(err)
		}
	})
	return hasher
}

type testEnv struct {
	URL  string
	Ring *signing.Keyring
	Pub  *recorder
	cfg  Config
}

func testConfig(t *testing.T, env map[string]string) Config {
	t.Helper()
	cfg, err := service.Load(servicetest.Env(env), defaults())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newEnv serves the auth handler over memstore with a fresh signing key.
func newEnv(t *testing.T, env map[string]string) *testEnv {
	t.Helper()
	cfg := testConfig(t, env)
	store := memstore.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ring := &signing.Keyring{}
	k, err := signing.GenerateKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ring.Set([]signing.Key{k})
	pub := &recorder{}
	h := NewServer(Deps{
		Log:       log,
		Config:    cfg,
		Accounts:  account.New(store, testHasher(t)),
		Sessions:  session.New(store, pub, log, cfg.SessionTTL, cfg.AccessTTL),
		Keys:      ring,
		Directory: keys.New(store, nil),
		Ready:     map[string]httpapi.Check{},

		KnownAddresses: throttle.StoreKnown{Store: store, TTL: cfg.KnownFor},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testEnv{URL: srv.URL, Ring: ring, Pub: pub, cfg: cfg}
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) code() string {
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &eb)
	return eb.Error.Code
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// do sends a request; body is marshalled unless it is a string (sent raw).
func (e *testEnv) do(t *testing.T, method, path, token string, body any, header ...string) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (e *testEnv) register(t *testing.T, username, pw string) api.User {
	t.Helper()
	r := e.do(t, "POST", "/api/v1/auth/register", "", api.RegisterRequest{Username: username, Password: pw})
	if r.Status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", username, r.Status, r.Body)
	}
	var ur api.UserResponse
	r.decode(t, &ur)
	return ur.User
}

func (e *testEnv) login(t *testing.T, username, pw string) api.TokenResponse {
	t.Helper()
	r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: username, Password: pw})
	if r.Status != http.StatusOK {
		t.Fatalf("login %s: %d %s", username, r.Status, r.Body)
	}
	var tr api.TokenResponse
	r.decode(t, &tr)
	return tr
}

func TestRegisterAnswersTheUser(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(t, "POST", "/api/v1/auth/register", "", map[string]string{"username": "alice", "password": "password1", "display_name": "Alice A."})
	if r.Status != http.StatusCreated {
		t.Fatalf("got %d %s, want 201", r.Status, r.Body)
	}
	var ur api.UserResponse
	r.decode(t, &ur)
	if ur.User.ID == "" || ur.User.Username != "alice" || ur.User.DisplayName != "Alice A." {
		t.Fatalf("got %+v", ur.User)
	}
	if bytes.Contains(r.Body, []byte("argon2")) || bytes.Contains(r.Body, []byte("password")) {
		t.Fatalf("response leaks the hash: %s", r.Body)
	}
	r = e.do(t, "POST", "/api/v1/auth/register", "", map[string]string{"username": "alice", "password": "password2"})
	if r.Status != http.StatusConflict || r.code() != "username_taken" {
		t.Fatalf("second registration: got %d %s, want 409 username_taken", r.Status, r.Body)
	}
}

func TestRegisterValidatesInput(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"username too short", api.RegisterRequest{Username: "ab", Password: "password1"}, 400, "invalid_username"},
		{"username too long", api.RegisterRequest{Username: strings.Repeat("a", 33), Password: "password1"}, 400, "invalid_username"},
		{"upper case username", api.RegisterRequest{Username: "Alice", Password: "password1"}, 400, "invalid_username"},
		{"username with a space", api.RegisterRequest{Username: "al ice", Password: "password1"}, 400, "invalid_username"},
		{"password under 8", api.RegisterRequest{Username: "bob", Password: "1234567"}, 400, "invalid_password"},
		{"password under 8 characters in 9 bytes", api.RegisterRequest{Username: "bob", Password: "日本語"}, 400, "invalid_password"},
		{"password over 256 bytes", api.RegisterRequest{Username: "bob", Password: strings.Repeat("p", 257)}, 400, "invalid_password"},
		{"display name with a control character", api.RegisterRequest{Username: "bob", Password: "password1", DisplayName: "a\x00b"}, 400, "invalid_display_name"},
		{"display name too long", api.RegisterRequest{Username: "bob", Password: "password1", DisplayName: strings.Repeat("é", 65)}, 400, "invalid_display_name"},
		{"username with a zero-width space", api.RegisterRequest{Username: "ali\u200bce", Password: "password1"}, 400, "invalid_username"},
		{"username with a right-to-left override", api.RegisterRequest{Username: "ali\u202ece", Password: "password1"}, 400, "invalid_username"},
		{"display name with a right-to-left override", api.RegisterRequest{Username: "bob", Password: "password1", DisplayName: "bob\u202Enimda"}, 400, "invalid_display_name"},
		{"display name with an unclosed bidi isolate", api.RegisterRequest{Username: "bob", Password: "password1", DisplayName: "\u2067bob"}, 400, "invalid_display_name"},
		{"display name with a zero-width space", api.RegisterRequest{Username: "bob", Password: "password1", DisplayName: "b\u200bob"}, 400, "invalid_display_name"},
		{"display name of invisible characters only", api.RegisterRequest{Username: "bob", Password: "password1", DisplayName: "\u200b\u2060"}, 400, "invalid_display_name"},
		{"display name with invalid UTF-8", "{\"username\":\"bob\",\"password\":\"password1\",\"display_name\":\"B\xffb\"}", 400, "invalid_display_name"},
		{"display name with a lone surrogate", `{"username":"bob","password":"password1","display_name":"B\ud800b"}`, 400, "invalid_display_name"},
		{"password with invalid UTF-8", "{\"username\":\"bob\",\"password\":\"password\xff\"}", 400, "invalid_password"},
		{"password with a lone surrogate", `{"username":"bob","password":"password\udfff"}`, 400, "invalid_password"},
		{"malformed JSON", `{"username":`, 400, "invalid_json"},
		{"empty body", ``, 400, "invalid_json"},
		{"body over the limit", `{"username":"bob","password":"` + strings.Repeat("p", maxBody) + `"}`, 413, "body_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "POST", "/api/v1/auth/register", "", tc.body)
			if r.Status != tc.wantStatus || r.code() != tc.wantCode {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, tc.wantStatus, tc.wantCode)
			}
		})
	}
	// Edge values that are allowed.
	e.register(t, "abc", "12345678")
	e.register(t, strings.Repeat("z", 32), strings.Repeat("p", 256))
	e.register(t, "a_b.c-d", "12345678")
	r := e.do(t, "POST", "/api/v1/auth/register", "", api.RegisterRequest{Username: "emoji", Password: "password1", DisplayName: "Ana \U0001F469\u200D\U0001F4BB"})
	if r.Status != http.StatusCreated {
		t.Fatalf("a display name with an emoji joined by ZWJ: %d %s", r.Status, r.Body)
	}
}

func TestSimultaneousRegistrationsOfOneNameGiveOne201AndThe409s(t *testing.T) {
	e := newEnv(t, nil)
	const n = 8
	statuses := make(chan resp, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			statuses <- e.do(t, "POST", "/api/v1/auth/register", "", api.RegisterRequest{Username: "racer", Password: fmt.Sprintf("password%d", i)})
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	created, taken := 0, 0
	for r := range statuses {
		switch {
		case r.Status == http.StatusCreated:
			created++
		case r.Status == http.StatusConflict && r.code() == "username_taken":
			taken++
		default:
			t.Errorf("unexpected answer %d %s", r.Status, r.Body)
		}
	}
	if created != 1 || taken != n-1 {
		t.Fatalf("got %d created and %d taken, want 1 and %d", created, taken, n-1)
	}
}

func TestLoginIssuesAnAccessTokenPerTheContract(t *testing.T) {
	e := newEnv(t, map[string]string{"ACCESS_TOKEN_TTL": "10m", "AUTH_ISSUER": "papo-iss", "AUTH_AUDIENCE": "papo-aud"})
	u := e.register(t, "alice", "password1")
	r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "alice", Password: "password1"})
	if r.Status != http.StatusOK {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var tr api.TokenResponse
	r.decode(t, &tr)
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 600 || tr.User != u || tr.AccessToken == "" {
		t.Fatalf("got %+v", tr)
	}
	if len(tr.RefreshToken) < 43 {
		t.Fatalf("refresh token %q is shorter than 256 bits of base64url", tr.RefreshToken)
	}

	var claims jwt.MapClaims
	tok, _, err := jwt.NewParser().ParseUnverified(tr.AccessToken, &claims)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := e.Ring.Current()
	if tok.Header["alg"] != "EdDSA" || tok.Header["typ"] != "at+jwt" || tok.Header["kid"] != cur.ID {
		t.Fatalf("header %v", tok.Header)
	}
	for _, c := range []string{"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "sid"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("claim %s missing from %v", c, claims)
		}
	}
	if claims["iss"] != "papo-iss" || claims["aud"] != "papo-aud" || claims["sub"] != u.ID {
		t.Fatalf("claims %v", claims)
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 600 {
		t.Fatalf("exp-iat = %v, want 600", exp-iat)
	}

	// An independent verifier that only knows the JWKS URL accepts it.
	keys := authn.NewHTTPKeys(nil, e.URL+"/api/v1/auth/jwks", authn.RemoteKeysOptions{})
	v := authn.NewVerifier(authn.Config{Issuer: "papo-iss", Audience: "papo-aud"}, keys)
	c, err := v.Verify(context.Background(), tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != u.ID || c.SessionID == "" {
		t.Fatalf("claims %+v", c)
	}
}

func TestLoginRefusesWrongCredentialsAlike(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice", "password1")
	for name, req := range map[string]api.LoginRequest{
		"wrong password":   {Username: "alice", Password: "password2"},
		"unknown user":     {Username: "nobody", Password: "password1"},
		"invalid username": {Username: "NO SUCH", Password: "password1"},
		"empty":            {},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do(t, "POST", "/api/v1/auth/login", "", req)
			if r.Status != http.StatusUnauthorized || r.code() != "invalid_credentials" {
				t.Fatalf("got %d %s, want 401 invalid_credentials", r.Status, r.Body)
			}
		})
	}
}

func TestJWKSListsEveryKeyWithKid(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(t, "GET", "/api/v1/auth/jwks", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("got %d", r.Status)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q, want application/jwk-set+json (RFC 7517)", ct)
	}
	var set authn.JWKSet
	r.decode(t, &set)
	cur, _ := e.Ring.Current()
	if len(set.Keys) != 1 || set.Keys[0].Kid != cur.ID || set.Keys[0].Kty != "OKP" || set.Keys[0].Crv != "Ed25519" {
		t.Fatalf("got %+v", set)
	}
	if strings.Contains(string(r.Body), `"d"`) {
		t.Fatalf("JWKS leaks a private member: %s", r.Body)
	}
}

func TestRotationNewestKeySignsAndOldTokensStillVerify(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice", "password1")
	old := e.login(t, "alice", "password1")
	oldKey, _ := e.Ring.Current()
	newKey, err := signing.GenerateKey(time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e.Ring.Set([]signing.Key{oldKey, newKey})

	var set authn.JWKSet
	e.do(t, "GET", "/api/v1/auth/jwks", "", nil).decode(t, &set)
	if len(set.Keys) != 2 || set.Keys[0].Kid != newKey.ID || set.Keys[1].Kid != oldKey.ID {
		t.Fatalf("JWKS after rotation: %+v, want new then old", set.Keys)
	}
	fresh := e.login(t, "alice", "password1")
	tok, _, _ := jwt.NewParser().ParseUnverified(fresh.AccessToken, jwt.MapClaims{})
	if tok.Header["kid"] != newKey.ID {
		t.Fatalf("new token signed by %v, want the newest key %s", tok.Header["kid"], newKey.ID)
	}
	if r := e.do(t, "GET", "/api/v1/me", old.AccessToken, nil); r.Status != http.StatusOK {
		t.Fatalf("token of the previous key: %d %s", r.Status, r.Body)
	}
	// Once the old key leaves the set, its tokens stop verifying.
	e.Ring.Set([]signing.Key{newKey})
	if r := e.do(t, "GET", "/api/v1/me", old.AccessToken, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("token of a removed key: %d %s", r.Status, r.Body)
	}
}

func TestRefreshRotatesAndReuseRevokesTheSession(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice", "password1")
	first := e.login(t, "alice", "password1")

	r := e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: first.RefreshToken})
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	var second api.TokenResponse
	r.decode(t, &second)
	if second.RefreshToken == first.RefreshToken || second.AccessToken == "" || second.User.Username != "alice" {
		t.Fatalf("refresh did not rotate: %+v", second)
	}
	if r := e.do(t, "GET", "/api/v1/me", second.AccessToken, nil); r.Status != http.StatusOK {
		t.Fatalf("new access token: %d %s", r.Status, r.Body)
	}

	// The rotated token again: reuse. The whole session dies.
	r = e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: first.RefreshToken})
	if r.Status != http.StatusUnauthorized || r.code() != "refresh_token_reused" {
		t.Fatalf("reuse: got %d %s, want 401 refresh_token_reused", r.Status, r.Body)
	}
	r = e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: second.RefreshToken})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("newest refresh token after reuse: got %d %s, want 401", r.Status, r.Body)
	}
	for _, at := range []string{first.AccessToken, second.AccessToken} {
		if r := e.do(t, "GET", "/api/v1/me", at, nil); r.Status != http.StatusUnauthorized || r.code() != "session_revoked" {
			t.Fatalf("access token after reuse: got %d %s, want 401 session_revoked", r.Status, r.Body)
		}
	}
	revs := e.Pub.revoked()
	if len(revs) != 1 || revs[0].SessionID == "" || revs[0].UserID != second.User.ID {
		t.Fatalf("revocations published: %+v", revs)
	}
	if until := revs[0].Until.Sub(revs[0].RevokedAt); until < e.cfg.AccessTTL {
		t.Fatalf("revocation lasts %v, shorter than the access token TTL %v", until, e.cfg.AccessTTL)
	}
}

func TestConcurrentRefreshesWithOneTokenLeaveNoLiveBranch(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice", "password1")
	first := e.login(t, "alice", "password1")
	const n = 4
	results := make(chan resp, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			results <- e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: first.RefreshToken})
		})
	}
	wg.Wait()
	close(results)
	ok := 0
	var winner api.TokenResponse
	for r := range results {
		if r.Status == http.StatusOK {
			ok++
			r.decode(t, &winner)
		}
	}
	// One token presented n times is reuse: at most one refresh wins
	// the race, and the others revoke the session it belongs to.
	if ok > 1 {
		t.Fatalf("%d refreshes of one token succeeded", ok)
	}
	if ok == 1 {
		if r := e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: winner.RefreshToken}); r.Status != http.StatusUnauthorized {
			t.Fatalf("the winning branch still refreshes: %d %s", r.Status, r.Body)
		}
	}
}

func TestRefreshRefusesUnknownTokens(t *testing.T) {
	e := newEnv(t, nil)
	for name, tok := range map[string]string{
		"random":   strings.Repeat("A", 43),
		"short":    "abc",
		"too long": strings.Repeat("A", 500),
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: tok})
			if r.Status != http.StatusUnauthorized || r.code() != "invalid_refresh_token" {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
	if r := e.do(t, "POST", "/api/v1/auth/refresh", "", `{}`); r.Status != http.StatusBadRequest {
		t.Fatalf("missing token: got %d %s, want 400", r.Status, r.Body)
	}
}

func TestLogoutRevokesTheSessionAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice", "password1")
	tr := e.login(t, "alice", "password1")
	other := e.login(t, "alice", "password1")

	if r := e.do(t, "POST", "/api/v1/auth/logout", tr.AccessToken, nil); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "GET", "/api/v1/me", tr.AccessToken, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("access token after logout: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "POST", "/api/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: tr.RefreshToken}); r.Status != http.StatusUnauthorized || r.code() != "session_revoked" {
		t.Fatalf("refresh after logout: %d %s", r.Status, r.Body)
	}
	// Another session of the same user is untouched.
	if r := e.do(t, "GET", "/api/v1/me", other.AccessToken, nil); r.Status != http.StatusOK {
		t.Fatalf("other session after logout: %d %s", r.Status, r.Body)
	}
	claims := jwt.MapClaims{}
	_, _, _ = jwt.NewParser().ParseUnverified(tr.AccessToken, claims)
	revs := e.Pub.revoked()
	if len(revs) != 1 || revs[0].SessionID != claims["sid"] {
		t.Fatalf("published %+v, want the session %v", revs, claims["sid"])
	}
	// A verifier elsewhere that got the notice refuses the token too.
	set := authn.NewRevocations()
	b, _ := json.Marshal(revs[0])
	if _, err := set.Apply(b); err != nil {
		t.Fatal(err)
	}
	keys := authn.NewHTTPKeys(nil, e.URL+"/api/v1/auth/jwks", authn.RemoteKeysOptions{})
	v := authn.NewVerifier(authn.Config{Issuer: "papo", Audience: "papo"}, keys, authn.WithRevocations(set))
	if _, err := v.Verify(context.Background(), tr.AccessToken); err == nil {
		t.Fatal("a verifier fed the notice still accepts the token")
	}
	if _, err := v.Verify(context.Background(), other.AccessToken); err != nil {
		t.Fatalf("the other session is refused: %v", err)
	}
	// A service that starts later learns it from auth's recent list.
	var recent authn.RecentRevocations
	e.do(t, "GET", authn.RevocationsPath, "", nil).decode(t, &recent)
	if len(recent.Revocations) != 1 || recent.Revocations[0].SessionID != claims["sid"] || !recent.Revocations[0].Until.After(time.Now()) {
		t.Fatalf("recent revocations %+v, want the session %v", recent, claims["sid"])
	}
}

func TestProtectedRoutesNeedAToken(t *testing.T) {
	e := newEnv(t, nil)
	for _, route := range []struct{ method, path string }{
		{"GET", "/api/v1/me"},
		{"POST", "/api/v1/auth/logout"},
		{"GET", "/api/v1/users?username=alice"},
		{"GET", "/api/v1/users/abc"},
	} {
		r := e.do(t, route.method, route.path, "", nil)
		if r.Status != http.StatusUnauthorized || r.code() != "missing_token" {
			t.Errorf("%s %s without a token: %d %s", route.method, route.path, r.Status, r.Body)
		}
		r = e.do(t, route.method, route.path, "not.a.jwt", nil)
		if r.Status != http.StatusUnauthorized || r.code() != "invalid_token" {
			t.Errorf("%s %s with garbage: %d %s", route.method, route.path, r.Status, r.Body)
		}
	}
}

func TestUsersLookups(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice", "password1")
	tok := e.login(t, "alice", "password1").AccessToken

	var me api.UserResponse
	e.do(t, "GET", "/api/v1/me", tok, nil).decode(t, &me)
	if me.User != alice {
		t.Fatalf("me: %+v", me)
	}
	var found UsersResponse
	e.do(t, "GET", "/api/v1/users?username=alice", tok, nil).decode(t, &found)
	if len(found.Users) != 1 || found.Users[0] != alice {
		t.Fatalf("users?username=alice: %+v", found)
	}
	r := e.do(t, "GET", "/api/v1/users?username=alic", tok, nil)
	if r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"users":[]}` {
		t.Fatalf("prefix is not an exact match: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "GET", "/api/v1/users", tok, nil); r.Status != http.StatusBadRequest {
		t.Fatalf("no username: %d", r.Status)
	}
	var byID api.UserResponse
	e.do(t, "GET", "/api/v1/users/"+alice.ID, tok, nil).decode(t, &byID)
	if byID.User != alice {
		t.Fatalf("users/{id}: %+v", byID)
	}
	if r := e.do(t, "GET", "/api/v1/users/nope", tok, nil); r.Status != http.StatusNotFound || r.code() != "user_not_found" {
		t.Fatalf("unknown id: %d %s", r.Status, r.Body)
	}
}

func TestInternalSessionStatus(t *testing.T) {
	e := newEnv(t, nil)
	u := e.register(t, "alice", "password1")
	tr := e.login(t, "alice", "password1")
	claims := jwt.MapClaims{}
	_, _, _ = jwt.NewParser().ParseUnverified(tr.AccessToken, claims)
	sid := claims["sid"].(string)

	var st authn.SessionStatus
	r := e.do(t, "GET", "/internal/v1/sessions/"+sid, "", nil)
	r.decode(t, &st)
	if r.Status != http.StatusOK || st != (authn.SessionStatus{SessionID: sid, UserID: u.ID, Active: true}) {
		t.Fatalf("live session: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "GET", "/internal/v1/sessions/nope", "", nil); r.Status != http.StatusNotFound || r.code() != "not_found" {
		t.Fatalf("unknown session: %d %s", r.Status, r.Body)
	}
	e.do(t, "POST", "/api/v1/auth/logout", tr.AccessToken, nil)
	if r := e.do(t, "GET", "/internal/v1/sessions/"+sid, "", nil); r.Status != http.StatusNotFound || r.code() != "session_revoked" {
		t.Fatalf("revoked session: %d %s", r.Status, r.Body)
	}
}

// from is the X-Forwarded-For header the gateway and its sidecar send for
// a client at ip (AUTH_FORWARDED_HOPS 2).
func from(ip string) []string { return []string{"X-Forwarded-For", ip + ", 10.0.0.9"} }

func TestFailedLoginsAreThrottledPerUsernameAndAddressWithGrowingBackoff(t *testing.T) {
	e := newEnv(t, map[string]string{"AUTH_LOGIN_FREE_FAILURES_PAIR": "2", "AUTH_LOGIN_FREE_FAILURES_IP": "100",
		"AUTH_LOGIN_BACKOFF_BASE": "10s"})
	e.register(t, "alice", "password1")
	bad := api.LoginRequest{Username: "alice", Password: "wrongpass"}
	for i := range 2 {
		if r := e.do(t, "POST", "/api/v1/auth/login", "", bad, from("203.0.113.7")...); r.Status != http.StatusUnauthorized {
			t.Fatalf("free failure %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	// The third failure starts a block of this username at this address;
	// the next attempt from there is refused even with the right password.
	e.do(t, "POST", "/api/v1/auth/login", "", bad, from("203.0.113.7")...)
	r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "alice", Password: "password1"}, from("203.0.113.7")...)
	if r.Status != http.StatusTooManyRequests || r.code() != "too_many_attempts" {
		t.Fatalf("blocked login: %d %s, want 429", r.Status, r.Body)
	}
	if ra := r.Header.Get("Retry-After"); ra != "10" {
		t.Fatalf("Retry-After %q, want 10", ra)
	}
	// Another username from the same address is not blocked.
	e.register(t, "bob", "password1")
	if r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "bob", Password: "password1"}, from("203.0.113.7")...); r.Status != http.StatusOK {
		t.Fatalf("another username from the address: %d %s", r.Status, r.Body)
	}
}

// The lockout scenario of issue 13: an attacker who fails logins in a
// victim's name from one address must not keep the victim, logging in
// from another address, out.
func TestAnAttackerElsewhereCannotLockAUserOut(t *testing.T) {
	e := newEnv(t, nil) // the documented defaults
	e.register(t, "victim", "password1")
	bad := api.LoginRequest{Username: "victim", Password: "wrongpass"}
	refused := 0
	for range 50 {
		r := e.do(t, "POST", "/api/v1/auth/login", "", bad, from("198.51.100.66")...)
		if r.Status == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("50 failed logins from one address were never throttled")
	}
	r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "victim", Password: "password1"}, from("203.0.113.20")...)
	if r.Status != http.StatusOK {
		t.Fatalf("the victim from another address: %d %s, want 200 at once", r.Status, r.Body)
	}
}

// A guesser spread over many addresses past the username-wide ceiling
// slows logins of that username from new addresses only: the owner at an
// address it logged in from before gets in at once.
func TestASpreadGuesserSlowsNewAddressesButNotKnownOnes(t *testing.T) {
	e := newEnv(t, map[string]string{"AUTH_LOGIN_FREE_FAILURES_USER": "6", "AUTH_LOGIN_FREE_FAILURES_PAIR": "2",
		"AUTH_LOGIN_USER_BACKOFF_MAX": "15s", "AUTH_LOGIN_BACKOFF_BASE": "20s"})
	e.register(t, "victim", "password1")
	good := api.LoginRequest{Username: "victim", Password: "password1"}
	if r := e.do(t, "POST", "/api/v1/auth/login", "", good, from("203.0.113.20")...); r.Status != http.StatusOK {
		t.Fatalf("first login: %d %s", r.Status, r.Body)
	}
	bad := api.LoginRequest{Username: "victim", Password: "wrongpass"}
	for i := range 8 { // two attempts from each of four addresses
		e.do(t, "POST", "/api/v1/auth/login", "", bad, from(fmt.Sprintf("198.51.100.%d", 10+i/2))...)
	}
	r := e.do(t, "POST", "/api/v1/auth/login", "", good, from("192.0.2.77")...)
	if r.Status != http.StatusTooManyRequests || r.code() != "too_many_attempts" {
		t.Fatalf("from a new address past the username's ceiling: %d %s, want 429", r.Status, r.Body)
	}
	if ra := r.Header.Get("Retry-After"); ra != "15" {
		t.Fatalf("Retry-After %q, want the username slow-down's cap of 15", ra)
	}
	if r := e.do(t, "POST", "/api/v1/auth/login", "", good, from("203.0.113.20")...); r.Status != http.StatusOK {
		t.Fatalf("the owner from a known address: %d %s, want 200", r.Status, r.Body)
	}
}

func TestFailedLoginsAreThrottledPerClientAddress(t *testing.T) {
	e := newEnv(t, map[string]string{"AUTH_LOGIN_FREE_FAILURES_IP": "3",
		"AUTH_FORWARDED_HOPS": "2"})
	e.register(t, "alice", "password1")
	// Spraying many usernames from one client address.
	for i := range 4 {
		e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: fmt.Sprintf("user%d", i), Password: "wrongpass"}, from("203.0.113.7")...)
	}
	r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "alice", Password: "password1"}, from("203.0.113.7")...)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("from the spraying address: %d %s, want 429 with Retry-After", r.Status, r.Body)
	}
	// A forged leftmost entry does not escape: the address is read from
	// the right, where the trusted proxies wrote it.
	r = e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "alice", Password: "password1"},
		"X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.9")
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("forged X-Forwarded-For escaped the throttle: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "POST", "/api/v1/auth/login", "", api.LoginRequest{Username: "alice", Password: "password1"}, from("203.0.113.8")...); r.Status != http.StatusOK {
		t.Fatalf("another address: %d %s", r.Status, r.Body)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"ttl not a duration":    {"ACCESS_TOKEN_TTL": "soon"},
		"ttl too short":         {"ACCESS_TOKEN_TTL": "10s"},
		"dev keys without file": {"AUTH_DEV_GENERATE_KEYS": "true"},
		"bad trusted issuers":   {"AUTH_TRUSTED_ISSUERS": `[{"issuer":"x"}]`},
		"bad port":              {"APP_PORT": "http"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := service.Load(servicetest.Env(env), defaults()); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestConfigDefaultsAreTheDocumentedOnes(t *testing.T) {
	t.Parallel()
	cfg, err := service.Load(servicetest.Env(nil), defaults())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Base = settings.Base{}
	want := Config{
		AccessTTL: 15 * time.Minute, SessionTTL: 720 * time.Hour,
		StateStore: "authstore", SecretStore: "secretstore", SigningSecret: "auth-signing-keys", KeyReload: time.Minute,
		ForwardedHops: 2, HashConcurrency: 4,
		Limits: Limits{PairFreeFailures: 5, IPFreeFailures: 20, BackoffBase: time.Second, BackoffMax: 15 * time.Minute,
			UserFreeFailures: 100, UserBackoffMax: time.Minute, KnownFor: 720 * time.Hour},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}
