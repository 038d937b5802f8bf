package launcher

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Profile says what infrastructure a components/<name>/ folder needs.
type Profile struct {
	Name string
	// EmbeddedNATS starts a JetStream server inside the launcher.
	EmbeddedNATS bool
	// EmbeddedKafka starts the Kafka stand-in (tools/kafkafake) as a
	// process of the stack; its address is ${PAPO_KAFKA_BROKERS}.
	EmbeddedKafka bool
	// NATSURL is an external JetStream server whose streams the launcher
	// creates before the sidecars start.
	NATSURL string
	// Needs are TCP addresses that must answer before the stack starts.
	Needs []string
}

// Profiles known to the launcher. A profile folder not listed here still
// runs, with no checks.
var Profiles = map[string]Profile{
	"local":             {Name: "local", EmbeddedNATS: true},
	"redis":             {Name: "redis", Needs: []string{"127.0.0.1:6379"}},
	"rabbitmq-postgres": {Name: "rabbitmq-postgres", Needs: []string{"127.0.0.1:5672", "127.0.0.1:5432"}},
	"nats-mysql":        {Name: "nats-mysql", NATSURL: "nats://127.0.0.1:4222", Needs: []string{"127.0.0.1:4222", "127.0.0.1:3306"}},
	"kafka-postgres":    {Name: "kafka-postgres", EmbeddedKafka: true, Needs: []string{"127.0.0.1:5432"}},
	"kafka-mongodb":     {Name: "kafka-mongodb", Needs: []string{"127.0.0.1:9092", "127.0.0.1:27017"}},
}

// ErrInfraMissing is wrapped by Start when a profile's servers do not answer.
var ErrInfraMissing = fmt.Errorf("infrastructure missing")

// CheckNeeds dials every address the profile needs.
func (p Profile) CheckNeeds(ctx context.Context) error {
	var missing []string
	for _, addr := range p.Needs {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			missing = append(missing, addr)
			continue
		}
		c.Close()
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: profile %s needs %s, which do not answer", ErrInfraMissing, p.Name, strings.Join(missing, ", "))
	}
	return nil
}

// renderComponents copies the profile's component files into dst,
// replacing ${PAPO_…} placeholders (data dir, embedded NATS URL, embedded
// Kafka address) with the
// stack's values. Other ${…} text is left alone.
func renderComponents(src, dst string, vars map[string]string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read components %s: %w", src, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("no component files in %s", src)
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		out := expand(string(b), vars)
		if err := os.WriteFile(filepath.Join(dst, name), []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// expand replaces ${NAME} for NAME in vars; unknown names stay as written.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		name := s[i+2 : i+j]
		b.WriteString(s[:i])
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else {
			b.WriteString(s[i : i+j+1])
		}
		s = s[i+j+1:]
	}
}
