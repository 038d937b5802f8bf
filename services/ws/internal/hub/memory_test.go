package hub_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/services/ws/internal/hub"
)

// TestIdleConnectionMemory measures what an idle authenticated connection
// costs a ws replica: the resident memory (RSS) of this process grows by
// that much per socket. The clients run in a child process, so their
// memory is not counted, and spread over several 127.0.0.x source
// addresses. It is a measurement, not a timed test, and runs only when
// asked:
//
//	PAPO_BENCH_CONNS=18000 go test -run IdleConnectionMemory -v ./internal/hub/
func TestIdleConnectionMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PAPO_BENCH_CONNS"))
	if n <= 0 {
		t.Skip("a measurement: set PAPO_BENCH_CONNS (e.g. 18000) to run it")
	}
	s := newStack(t, 1, hub.Config{MaxConnsPerUser: 1, LiveHold: 100 * time.Millisecond})
	tokens := filepath.Join(t.TempDir(), "tokens")
	f, err := os.Create(tokens)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		user := fmt.Sprintf("u%05d", i)
		if i%100 == 0 {
			s.world.room(fmt.Sprintf("room%03d", i/100))
		}
		s.world.rooms[fmt.Sprintf("room%03d", i/100)].members[user] = true
		fmt.Fprintln(w, s.token(user))
	}
	w.Flush()
	f.Close()

	before := settle(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientsProcess$")
	cmd.Env = append(os.Environ(), "PAPO_BENCH_CLIENT_URL="+s.urls[0], "PAPO_BENCH_TOKENS="+tokens)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	start := time.Now()
	for s.hubs[0].Stats().Open.Load() < int64(n) {
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("only %d of %d connections after 5 min", s.hubs[0].Stats().Open.Load(), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	connectTime := time.Since(start)
	time.Sleep(500 * time.Millisecond) // every socket past its live hold
	after := settle(t)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	per := float64(after.rss-before.rss) / float64(n)
	t.Logf("%d idle connections (connected in %s): RSS %d -> %d KiB, %.1f KiB per connection; "+
		"Go heap in use %.1f KiB/conn, stacks %.1f KiB/conn, goroutines %d",
		n, connectTime.Round(time.Millisecond), before.rss/1024, after.rss/1024, per/1024,
		float64(after.heap-before.heap)/float64(n)/1024, float64(after.stack-before.stack)/float64(n)/1024, runtime.NumGoroutine())
}

type memSample struct{ rss, heap, stack uint64 }

// settle collects garbage, returns freed memory to the OS and samples.
func settle(t *testing.T) memSample {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("needs /proc/self/status (Linux)")
	}
	var m memSample
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			m.rss = kb * 1024
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heap, m.stack = ms.HeapInuse, ms.StackInuse
	return m
}

// TestIdleClientsProcess is the client side of TestIdleConnectionMemory,
// run in a child process: it opens one socket per token and holds them
// until its stdin closes.
func TestIdleClientsProcess(t *testing.T) {
	url := os.Getenv("PAPO_BENCH_CLIENT_URL")
	if url == "" {
		t.Skip("child process of TestIdleConnectionMemory")
	}
	b, err := os.ReadFile(os.Getenv("PAPO_BENCH_TOKENS"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := strings.Fields(string(b))
	conns := make([]*websocket.Conn, len(tokens))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, tok := range tokens {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// About 28,000 ephemeral ports per source address: spread.
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}
			d := websocket.Dialer{
				NetDialContext:  (&net.Dialer{LocalAddr: src}).DialContext,
				Subprotocols:    []string{api.Subprotocol},
				ReadBufferSize:  256,
				WriteBufferSize: 256,
			}
			c, _, err := d.DialContext(context.Background(), url, http.Header{"Authorization": {"Bearer " + tok}})
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			if _, _, err := c.ReadMessage(); err != nil { // hello
				t.Errorf("hello %d: %v", i, err)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
