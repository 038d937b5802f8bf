package signing

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/papochat/papo/platform/authn"
)

// secrets is a SecretGetter over a fixed map, answering like Dapr's
// local file store: an error for a missing secret.
type secrets map[string]map[string]string

func (s secrets) GetSecret(_ context.Context, store, key string, _ map[string]string) (map[string]string, error) {
	if v, ok := s[key]; ok {
		return v, nil
	}
	return nil, errors.New("secret " + key + " not found")
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLoadReadsKeysFromTheSecretStore(t *testing.T) {
	k1, _ := GenerateKey(time.Now().Add(-time.Hour))
	k2, _ := GenerateKey(time.Now())
	doc, err := Encode([]Key{k1, k2})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]map[string]string{
		"local file store: value under the secret's name": {"auth-signing-keys": string(doc)},
		"kubernetes secret with one data key":             {"keys.json": string(doc)},
	} {
		t.Run(name, func(t *testing.T) {
			src := &Source{Secrets: secrets{"auth-signing-keys": data}, Store: "secretstore", Name: "auth-signing-keys", Log: quiet()}
			keys, err := src.Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ring := &Keyring{}
			ring.Set(keys)
			cur, _ := ring.Current()
			if len(keys) != 2 || cur.ID != k2.ID || !cur.Private.Equal(k2.Private) {
				t.Fatalf("got %d keys, current %s; want 2, current %s", len(keys), cur.ID, k2.ID)
			}
		})
	}
}

func TestLoadWithoutKeysFailsOutsideDevelopment(t *testing.T) {
	src := &Source{Secrets: secrets{}, Store: "secretstore", Name: "auth-signing-keys", Log: quiet()}
	if _, err := src.Load(context.Background()); err == nil {
		t.Fatal("no key and no dev generation: Load succeeded")
	}
}

func TestDevelopmentGeneratesOneKeyAndKeepsIt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(file, []byte(`{"other":"value"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &Source{Secrets: secrets{}, Store: "secretstore", Name: "auth-signing-keys", DevGenerate: true, DevKeyFile: file, Log: quiet()}
	first, err := src.Load(context.Background())
	if err != nil || len(first) != 1 {
		t.Fatalf("first load: %v, %d keys", err, len(first))
	}
	// A second start, whose sidecar still has the old view of the file,
	// finds the same key in the file instead of making another.
	second, err := src.Load(context.Background())
	if err != nil || len(second) != 1 || second[0].ID != first[0].ID {
		t.Fatalf("second load: %v, %+v", err, second)
	}
	// The file is what the local file store reads: the other secret is
	// kept, and the keys are one string value under the secret's name.
	b, _ := os.ReadFile(file)
	var all map[string]string
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatalf("secrets file is not a flat JSON object of strings: %v\n%s", err, b)
	}
	if all["other"] != "value" {
		t.Fatal("persisting dropped another secret")
	}
	keys, err := Decode([]byte(all["auth-signing-keys"]))
	if err != nil || len(keys) != 1 || keys[0].ID != first[0].ID {
		t.Fatalf("file holds %v, %v", keys, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file mode %v, want 0600", fi.Mode().Perm())
	}
	// Through the secret store (as after a restart) the same key loads.
	src.Secrets = secrets{"auth-signing-keys": {"auth-signing-keys": all["auth-signing-keys"]}}
	third, err := src.Load(context.Background())
	if err != nil || third[0].ID != first[0].ID {
		t.Fatalf("through the store: %v, %+v", err, third)
	}
}

func TestDecodeRefusesBadDocuments(t *testing.T) {
	for _, doc := range []string{
		`{`,
		`{"keys":[{"kid":"a","ed25519_seed":"c2hvcnQ="}]}`,
		`{"keys":[{"kid":"","ed25519_seed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`,
		`{"keys":[{"kid":"a","ed25519_seed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},{"kid":"a","ed25519_seed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`,
	} {
		if _, err := Decode([]byte(doc)); err == nil {
			t.Errorf("accepted %s", doc)
		}
	}
}

func TestIssuedTokensVerifyWithTheJWKS(t *testing.T) {
	ring := &Keyring{}
	iss := &Issuer{Ring: ring, Issuer: "papo", Audience: "papo", TTL: 15 * time.Minute}
	if _, _, err := iss.Issue("u1", "s1"); err == nil {
		t.Fatal("issued a token with no key loaded")
	}
	k, _ := GenerateKey(time.Now())
	ring.Set([]Key{k})
	tok, exp, err := iss.Issue("u1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d < 14*time.Minute || d > 15*time.Minute {
		t.Fatalf("expires in %v, want about 15m", d)
	}
	b, _ := json.Marshal(ring.JWKS())
	keys, err := authn.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := authn.NewVerifier(authn.Config{Issuer: "papo", Audience: "papo"}, authn.StaticKeys(keys)).Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "u1" || c.SessionID != "s1" || c.TokenID == "" {
		t.Fatalf("claims %+v", c)
	}
}
