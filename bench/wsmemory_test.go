package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
)

const (
	memConns       = 18000
	memUsers       = 300              // 60 connections each; each user logs in once
	memRooms       = 3                // 100 members each, so the routing table is not empty
	memSources     = 8                // source addresses 127.0.0.2 … 127.0.0.9
	memDialers     = 64               // handshakes in flight
	memSettle      = 60 * time.Second // every socket pinged twice (25 s period)
	memSamples     = 3
	memDialTimeout = 10 * time.Minute
)

// BenchmarkWSIdleConnectionMemory measures what an idle authenticated
// WebSocket costs the ws service: 18,000 connections opened straight to the
// replica ws-1 of a fresh local stack (300 users, 60 connections each, the
// per-user cap raised to 200; every user a member of one of 3 rooms), dialed
// from 8 source addresses so no source runs short of ephemeral ports. Each
// connection presents its user's token in Sec-WebSocket-Protocol, gets its
// hello frame, then stays idle (a reader answers pings). The figure is the
// growth of ws-1's resident set (VmRSS in /proc/<pid>/status) divided by the
// connections, read when all are open and every 20 s for 60 s of idle (the
// last reading is the figure: every socket has had its pings by then); the
// ws process runs as it does in production (no forced GC).
func BenchmarkWSIdleConnectionMemory(b *testing.B) {
	measured.once(b, func() map[string]float64 { return measureWSMemory(b) })
}

func measureWSMemory(b *testing.B) map[string]float64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < memConns+500 {
		b.Skipf("open-file limit %d is too low for %d connections", lim.Cur, memConns)
	}
	s := startStack(b, "local", 1)
	ws1 := s.App("ws-1")
	pid := ws1.Pid()
	users := newUsers(b, s, "mem", memUsers)
	ctx, cancel := context.WithTimeout(context.Background(), memDialTimeout)
	defer cancel()
	rooms := make([]string, memRooms)
	for i := range rooms {
		r, err := users[i].CreateRoom(ctx, "idle "+randomName(""), api.RoomPublic)
		if err != nil {
			b.Fatal(err)
		}
		rooms[i] = r.ID
	}
	for i, u := range users[memRooms:] {
		if _, err := u.JoinRoom(ctx, rooms[i%memRooms]); err != nil {
			b.Fatal(err)
		}
	}

	dialers := make([]*websocket.Dialer, memSources)
	for i := range dialers {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}, Timeout: 30 * time.Second}
		dialers[i] = &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: 30 * time.Second,
			ReadBufferSize:   1024,
			WriteBufferSize:  1024,
		}
	}
	url := wsURL(s, "ws-1")

	base := rssKiB(b, pid)
	b.Logf("ws-1 (pid %d) before: VmRSS %d KiB", pid, base)
	conns := make([]*websocket.Conn, memConns)
	var alive, retried atomic.Int64
	var readers sync.WaitGroup
	jobs := make(chan int)
	errc := make(chan error, memDialers)
	var workers sync.WaitGroup
	start := time.Now()
	for range memDialers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range jobs {
				u := users[i%memUsers]
				d := *dialers[i%memSources]
				d.Subprotocols = []string{api.Subprotocol, api.BearerProtocolPref + u.Token}
				// A handshake answered 5xx (a sidecar briefly losing the
				// auth service's address under this load) is retried as a
				// client would, at most 5 times; retries are counted.
				var c *websocket.Conn
				var resp *http.Response
				var err error
				for try := range 6 {
					c, resp, err = d.DialContext(ctx, url, appToken(s))
					if err == nil || resp == nil || resp.StatusCode < 500 || try == 5 {
						break
					}
					resp.Body.Close()
					retried.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(try+1) * 200 * time.Millisecond):
					}
				}
				if err != nil {
					if resp != nil {
						body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
						resp.Body.Close()
						err = fmt.Errorf("%w (HTTP %s: %s)", err, resp.Status, body)
					}
					errc <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, hello, err := c.ReadMessage()
				if err != nil || !strings.Contains(string(hello), `"hello"`) {
					errc <- fmt.Errorf("connection %d: no hello (%q, %v)", i, hello, err)
					c.Close()
					return
				}
				_ = c.SetReadDeadline(time.Time{})
				conns[i] = c
				alive.Add(1)
				readers.Add(1)
				go func() {
					defer readers.Done()
					defer alive.Add(-1)
					for {
						if _, _, err := c.NextReader(); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		readers.Wait()
	}()
feed:
	for i := range memConns {
		select {
		case jobs <- i:
		case err := <-errc:
			close(jobs)
			workers.Wait()
			b.Fatalf("after %d connections: %v", alive.Load(), err)
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	workers.Wait()
	select {
	case err := <-errc:
		b.Fatalf("after %d connections: %v", alive.Load(), err)
	default:
	}
	opened := time.Since(start)
	if n := alive.Load(); n != memConns {
		b.Fatalf("%d of %d connections open after %s", n, memConns, opened)
	}
	atOpen := rssKiB(b, pid)
	b.Logf("%d connections open on ws-1 in %s (%.0f/s, %d handshakes retried after a 5xx); VmRSS %d KiB (load %s)", memConns, opened.Round(time.Millisecond),
		float64(memConns)/opened.Seconds(), retried.Load(), atOpen, loadavg())
	// Idle: the RSS is read every memSettle/memSamples; the last reading,
	// after every socket has had its pings and the ws process its
	// collections, is the figure.
	settled := atOpen
	for i := range memSamples {
		select {
		case <-time.After(memSettle / memSamples):
		case <-ctx.Done():
		}
		settled = rssKiB(b, pid)
		b.Logf("after %s idle: VmRSS %d KiB (%.1f KiB/conn)", memSettle/memSamples*time.Duration(i+1), settled, float64(settled-base)/memConns)
	}
	if n := alive.Load(); n != memConns {
		b.Fatalf("only %d of %d connections still open after %s idle", n, memConns, memSettle)
	}
	hwm := statusKiB(b, pid, "VmHWM")
	perOpen := float64(atOpen-base) / memConns
	perSettled := float64(settled-base) / memConns
	b.Logf("ws-1 VmRSS: before %d KiB, all %d open %d KiB (%.1f KiB/conn), after %s idle %d KiB (%.1f KiB/conn), peak VmHWM %d KiB; threads %d",
		base, memConns, atOpen, perOpen, memSettle, settled, perSettled, hwm, statusKiB(b, pid, "Threads"))
	return map[string]float64{"KiB/conn-open": perOpen, "KiB/conn-idle": perSettled, "conns": memConns}
}

func rssKiB(b *testing.B, pid int) int64 { return statusKiB(b, pid, "VmRSS") }

// statusKiB reads one field of /proc/<pid>/status (a size in kB, or a count).
func statusKiB(b *testing.B, pid int, field string) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		v, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
