package launcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpandFillsOnlyKnownPlaceholders(t *testing.T) {
	vars := map[string]string{"PAPO_DATA_DIR": "/data", "PAPO_NATS_URL": "nats://127.0.0.1:4223"}
	cases := []struct{ in, want string }{
		{"connectionString: ${PAPO_DATA_DIR}/a.db", "connectionString: /data/a.db"},
		{"url: ${PAPO_NATS_URL} and ${PAPO_NATS_URL}", "url: nats://127.0.0.1:4223 and nats://127.0.0.1:4223"},
		{"left alone: ${HOME} ${UNKNOWN}", "left alone: ${HOME} ${UNKNOWN}"},
		{"unterminated ${PAPO_DATA_DIR", "unterminated ${PAPO_DATA_DIR"},
		{"no placeholders", "no placeholders"},
	}
	for _, c := range cases {
		if got := expand(c.in, vars); got != c.want {
			t.Errorf("expand(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestEveryProfileRendersItsComponents renders each profile folder the
// way Start does and checks the launcher's own profiles (local, redis) keep no placeholder.
func TestEveryProfileRendersItsComponents(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"PAPO_DATA_DIR": "/d", "PAPO_NATS_URL": "nats://x", "PAPO_SECRETS_FILE": "/d/s.json", "PAPO_PUSH_URL": "http://p", "PAPO_REDIS_DB": "0"}
	for name := range Profiles {
		src := filepath.Join(root, "components", name)
		if _, err := os.Stat(src); err != nil {
			t.Errorf("profile %s has no folder %s", name, src)
			continue
		}
		dst := t.TempDir()
		if err := renderComponents(src, dst, vars); err != nil {
			t.Errorf("render %s: %v", name, err)
			continue
		}
		if name != "local" && name != "redis" {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dst, "*.yaml"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if bytesContains(b, "${PAPO_") {
				t.Errorf("%s keeps a placeholder after rendering", f)
			}
		}
	}
}

func bytesContains(b []byte, s string) bool { return strings.Contains(string(b), s) }
