package launcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/papochat/papo/platform/events"
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
// way Start does and checks the launcher's own profiles (local, redis,
// kafka-postgres) keep no placeholder.
func TestEveryProfileRendersItsComponents(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"PAPO_DATA_DIR": "/d", "PAPO_NATS_URL": "nats://x", "PAPO_SECRETS_FILE": "/d/s.json", "PAPO_PUSH_URL": "http://p", "PAPO_REDIS_DB": "0", "PAPO_KAFKA_BROKERS": "127.0.0.1:1"}
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
		if name != "local" && name != "redis" && name != "kafka-postgres" {
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

// TestDeploymentsCreateEveryStream: docker-compose.yml and the Kubernetes
// job create the JetStream streams themselves; each must list every topic
// the services use, or a sidecar subscribing to a missing one fails.
func TestDeploymentsCreateEveryStream(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"docker-compose.yml", "components/nats-mysql/kubernetes/streams-job.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		var loop string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "for topic in ") {
				loop = line
			}
		}
		if loop == "" {
			t.Fatalf("%s has no stream-creating loop", f)
		}
		for _, topic := range events.AllTopics {
			if !strings.Contains(loop+" ", " "+topic+" ") && !strings.Contains(loop, " "+topic+";") {
				t.Errorf("%s does not create the stream of %s", f, topic)
			}
		}
	}
}
