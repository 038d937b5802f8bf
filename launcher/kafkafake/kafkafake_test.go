package kafkafake

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStartServesAndStopKeepsTheDataDir: the broker is built from
// tools/kafkafake, serves on its port with its topics made, and a
// graceful stop leaves its state in the data dir, which the next start
// loads (it says so in its data dir's meta.json and the partition
// folders of the topics it was given).
func TestStartServesAndStopKeepsTheDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := build(t, ctx)
	dir := filepath.Join(t.TempDir(), "kafka")
	log := &lines{}
	opts := Options{Bin: bin, Port: freePort(t), DataDir: dir, Partitions: 2,
		Topics: map[string]time.Duration{"room.events": 15 * time.Minute}, Log: log}
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	c.Close()
	s.Stop()
	for _, f := range []string{"meta.json", "topics.json", "partitions/room.events-0", "partitions/room.events-1"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("data dir after stop: %v", err)
		}
	}
	if !strings.Contains(log.String(), "kafka | kafkafake: serving on "+s.Addr()) {
		t.Errorf("log does not say where it serves:\n%s", log.String())
	}
	opts.Port = freePort(t)
	s2, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start again on the same data dir: %v", err)
	}
	s2.Stop()
}

// TestStartFailsClearlyOnATakenPort: a port another process holds is an
// error naming it, not a hang.
func TestStartFailsClearlyOnATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := build(t, ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = Start(ctx, Options{Bin: bin, Port: port})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("got %v, want an error saying the port is taken", err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildBin != "" {
		_ = os.RemoveAll(filepath.Dir(buildBin))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

func build(t *testing.T, ctx context.Context) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kafkafake-bin-")
		if err != nil {
			buildErr = err
			return
		}
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "kafkafake")
		buildErr = Build(ctx, root, buildBin)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lines is a log writer safe for the broker's output goroutine.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
