package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/authn"
)

// keycloak is an external OIDC issuer: an RSA key and its JWKS served on
// a real local HTTP server.
type keycloak struct {
	key     *rsa.PrivateKey
	issuer  string
	jwksURL string
}

func newKeycloak(t *testing.T) *keycloak {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := authn.PublicJWK("kc-key", &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(authn.JWKSet{Keys: []authn.JWK{jwk}})
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &keycloak{key: key, issuer: "https://sso.example/realms/papo", jwksURL: srv.URL + "/protocol/openid-connect/certs"}
}

func (k *keycloak) token(t *testing.T, sub, username, aud string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": k.issuer, "aud": aud, "sub": sub, "sid": "kc-" + sub, "preferred_username": username,
		"name": "Maria Silva", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
	tok.Header["kid"] = "kc-key"
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExternalIssuerTokensMapToALocalUserOnFirstUse(t *testing.T) {
	kc := newKeycloak(t)
	trusted, _ := json.Marshal([]authn.TrustedIssuerConfig{{Issuer: kc.issuer, JWKSURL: kc.jwksURL, Audience: "papo-api"}})
	e := newEnv(t, map[string]string{"AUTH_TRUSTED_ISSUERS": string(trusted)})
	e.register(t, "maria", "password1") // takes the preferred username

	tok := kc.token(t, "kc-sub-1", "maria", "papo-api")
	var first api.UserResponse
	r := e.do(t, "GET", "/api/v1/me", tok, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("external token: %d %s", r.Status, r.Body)
	}
	r.decode(t, &first)
	if first.User.ID == "" || first.User.Username == "maria" || first.User.DisplayName != "Maria Silva" {
		t.Fatalf("mapped user %+v: want a new user that does not take the local maria", first.User)
	}
	var again api.UserResponse
	e.do(t, "GET", "/api/v1/me", kc.token(t, "kc-sub-1", "maria", "papo-api"), nil).decode(t, &again)
	if again.User != first.User {
		t.Fatalf("second use mapped to %+v, first to %+v", again.User, first.User)
	}
	var other api.UserResponse
	e.do(t, "GET", "/api/v1/me", kc.token(t, "kc-sub-2", "Joao.Souza@corp", "papo-api"), nil).decode(t, &other)
	if other.User.ID == first.User.ID || other.User.Username != "joao.souza.corp" {
		t.Fatalf("another subject: %+v", other.User)
	}
	if r := e.do(t, "GET", "/api/v1/me", kc.token(t, "kc-sub-1", "maria", "other-client"), nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong audience: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "POST", "/api/v1/auth/logout", tok, nil); r.Status != http.StatusBadRequest || r.code() != "external_session" {
		t.Fatalf("logout of an external session: %d %s", r.Status, r.Body)
	}
}

func TestResolveIdentityOnlyForTrustedIssuers(t *testing.T) {
	kc := newKeycloak(t)
	trusted, _ := json.Marshal([]authn.TrustedIssuerConfig{{Issuer: kc.issuer, JWKSURL: kc.jwksURL, Audience: "papo-api"}})
	e := newEnv(t, map[string]string{"AUTH_TRUSTED_ISSUERS": string(trusted)})
	r := e.do(t, "POST", authn.IdentitiesPath, "", authn.ExternalIdentity{Issuer: "https://evil.example", Subject: "x"})
	if r.Status != http.StatusForbidden || r.code() != "untrusted_issuer" {
		t.Fatalf("untrusted issuer: %d %s", r.Status, r.Body)
	}
	r = e.do(t, "POST", authn.IdentitiesPath, "", authn.ExternalIdentity{Issuer: kc.issuer, Subject: "s-1", Username: "ana"})
	var ur api.UserResponse
	r.decode(t, &ur)
	if r.Status != http.StatusOK || ur.User.Username != "ana" {
		t.Fatalf("trusted issuer: %d %s", r.Status, r.Body)
	}
	if r := e.do(t, "POST", authn.IdentitiesPath, "", authn.ExternalIdentity{Issuer: kc.issuer}); r.Status != http.StatusBadRequest {
		t.Fatalf("no subject: %d %s", r.Status, r.Body)
	}
}
