package launcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewTokensAreRandomAndKeptForTheOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-tokens.env")
	// A file left with loose permissions is tightened, not reused.
	if err := os.WriteFile(path, []byte("APP_API_TOKEN=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := newTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{a.App, a.Dapr, b.App, b.Dapr} {
		if len(tok) != 64 {
			t.Errorf("token %q: want 64 hex characters", tok)
		}
	}
	if a.App == a.Dapr || a.App == b.App || a.Dapr == b.Dapr {
		t.Errorf("tokens repeat: %+v %+v", a, b)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("token file mode %o, want 600", perm)
	}
	got, _ := os.ReadFile(path)
	if want := "APP_API_TOKEN=" + b.App + "\nDAPR_API_TOKEN=" + b.Dapr + "\n"; string(got) != want {
		t.Errorf("token file %q, want %q", got, want)
	}
	if strings.Contains(string(got), "old") {
		t.Error("the old file's content survived")
	}
}
