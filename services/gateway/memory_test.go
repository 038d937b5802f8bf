package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/authn/authntest"
	"github.com/papochat/papo/platform/handoff"
)

// TestRelayedConnectionCost measures what a WebSocket costs the gateway:
// the growth of this process's resident memory per idle socket, and its
// CPU per frame sent to the client. Relayed (TLS, or a replica on another
// host) by default; handed off with PAPO_BENCH_HANDOFF=1. The replica and
// the clients run in a child process, so only the gateway is counted. A
// measurement, not a timed test; it runs only when asked:
//
//	PAPO_BENCH_CONNS=5000 [PAPO_BENCH_HANDOFF=1] go test -run RelayedConnectionCost -v .
func TestRelayedConnectionCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PAPO_BENCH_CONNS"))
	if n <= 0 {
		t.Skip("a measurement: set PAPO_BENCH_CONNS (e.g. 5000) to run it")
	}
	const frames = 20
	iss := authntest.New()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelayChildProcess$")
	cmd.Env = append(os.Environ(), "PAPO_RELAY_CHILD="+strconv.Itoa(n), "PAPO_RELAY_TOKEN="+iss.Token("u1", "s1", time.Hour))
	if os.Getenv("PAPO_BENCH_HANDOFF") == "1" {
		dir, err := os.MkdirTemp("", "gw-cost-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		cmd.Env = append(cmd.Env, "PAPO_RELAY_SOCKET="+filepath.Join(dir, "ws.sock"))
	}
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), prefix+" "); ok {
				return rest
			}
		}
		t.Fatalf("child ended before %q", prefix)
		return ""
	}
	upstream, sock, _ := strings.Cut(expect("upstream"), " ")
	p, err := newWSProxy(t.Context(), []string{upstream}, []string{sock}, sock != "", time.Second, testAppToken, iss.Verifier(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(p)
	defer gw.Close()

	before := rss(t)
	fmt.Fprintf(stdin, "dial %s\n", gw.URL)
	expect("open")
	time.Sleep(time.Second) // settle: every handshake's garbage is collectable
	after := rss(t)
	cpu0 := cpuTime(t)
	fmt.Fprintf(stdin, "send %d\n", frames)
	expect("sent")
	cpu := cpuTime(t) - cpu0
	t.Logf("%d idle sockets (hand-off: %v): gateway RSS %d -> %d KiB, %.1f KiB per socket (goroutines %d); "+
		"%d frames of 200 bytes relayed: %.2f µs of gateway CPU per frame",
		n, sock != "", before/1024, after/1024, float64(after-before)/1024/float64(n), runtime.NumGoroutine(),
		n*frames, float64(cpu.Microseconds())/float64(n*frames))
}

// rss collects garbage, returns it to the OS and reads VmRSS.
func rss(t *testing.T) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("needs /proc/self/status (Linux)")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRelayChildProcess is the replica and the clients of
// TestRelayedConnectionCost: it serves WebSockets, prints "upstream
// <url>", and on "dial <gateway>" opens its sockets through the gateway
// ("open" when all have their hello); on "send <k>" the replica sends k
// frames on every socket ("sent" when every client has them).
func TestRelayChildProcess(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PAPO_RELAY_CHILD"))
	if n <= 0 {
		t.Skip("child process of TestRelayedConnectionCost")
	}
	var mu sync.Mutex
	var served []*websocket.Conn
	up := websocket.Upgrader{Subprotocols: []string{api.Subprotocol}, ReadBufferSize: 256, WriteBufferSize: 256}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
		mu.Lock()
		served = append(served, c)
		mu.Unlock()
		go func() { // answer pings and closes
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
	}))
	defer srv.Close()
	sock := os.Getenv("PAPO_RELAY_SOCKET")
	if sock != "" {
		ln, err := handoff.Listen(sock, nil)
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: srv.Config.Handler}
		go hs.Serve(ln)
		defer hs.Close()
	}
	fmt.Printf("upstream %s %s\n", srv.URL, sock)

	var received atomic.Int64
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "dial":
			dialAll(t, n, "ws"+strings.TrimPrefix(arg, "http")+"/ws", os.Getenv("PAPO_RELAY_TOKEN"), &received)
			fmt.Println("open ok")
		case "send":
			k, _ := strconv.Atoi(arg)
			payload := []byte(strings.Repeat("x", 200))
			mu.Lock()
			for _, c := range served {
				for range k {
					_ = c.WriteMessage(websocket.TextMessage, payload)
				}
			}
			mu.Unlock()
			for received.Load() < int64(n*k) {
				time.Sleep(10 * time.Millisecond)
			}
			fmt.Println("sent ok")
		}
	}
}

func dialAll(t *testing.T, n int, url, token string, received *atomic.Int64) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// About 28,000 ephemeral ports per source address: spread.
			d := websocket.Dialer{
				NetDialContext:  (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}).DialContext,
				Subprotocols:    []string{api.Subprotocol, api.BearerProtocolPref + token},
				ReadBufferSize:  256,
				WriteBufferSize: 256,
			}
			c, _, err := d.Dial(url, nil)
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			if _, _, err := c.ReadMessage(); err != nil {
				t.Errorf("hello %d: %v", i, err)
				return
			}
			go func() {
				for {
					_, r, err := c.NextReader()
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, r)
					received.Add(1)
				}
			}()
		}()
	}
	wg.Wait()
}
