package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

// The WebSocket edge: the gateway checks the token and hands the client's
// socket itself to a ws replica of the same machine (docs/deploy.md).

// serverSocket returns the inode of the gateway-side socket of a client
// connected from local to the gateway: the socket the gateway accepted,
// whichever process holds it now.
func serverSocket(t *testing.T, s *launcher.Stack, local net.Addr) string {
	t.Helper()
	gw := s.App("gateway")
	want := procAddr(t, "127.0.0.1", gw.PublicPort) + " " + procAddr(t, local.(*net.TCPAddr).IP.String(), local.(*net.TCPAddr).Port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("needs /proc/net/tcp (Linux): %v", err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1]+" "+f[2] == want {
			return f[9]
		}
	}
	t.Fatalf("no socket %s in /proc/net/tcp", want)
	return ""
}

// procAddr formats an IPv4 address as /proc/net/tcp does.
func procAddr(t *testing.T, ip string, port int) string {
	t.Helper()
	v4 := net.ParseIP(ip).To4()
	if v4 == nil {
		t.Fatalf("%s is not IPv4", ip)
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", v4[3], v4[2], v4[1], v4[0], port)
}

// sockets returns the socket inodes among pid's open files.
func sockets(t *testing.T, pid int) map[string]bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("open files of %d: %v", pid, err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	return out
}

// holder returns the name of the stack's process holding socket inode,
// among the gateway and the ws replicas ("" if none does).
func holder(t *testing.T, s *launcher.Stack, inode string) string {
	t.Helper()
	for _, a := range append(s.Apps("gateway"), s.Apps("ws")...) {
		if pid := a.Pid(); pid != 0 && sockets(t, pid)[inode] {
			return a.Name
		}
	}
	return ""
}

// TestTheGatewayHandsTheClientsSocketToAReplica: a socket opened through
// the gateway is held by a ws replica, not by the gateway, which keeps no
// descriptor for it; the conversation, a resume and the server's close
// codes work over it.
func TestTheGatewayHandsTheClientsSocketToAReplica(t *testing.T) {
	s := stack(t, "local")
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "edge "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}

	gwPid := s.App("gateway").Pid()
	before := len(sockets(t, gwPid))
	a := newCollector(dialGateway(t, alice))
	b := newCollector(dialGateway(t, bob))
	for _, c := range []*collector{a, b} {
		inode := serverSocket(t, s, c.ws.LocalAddr())
		if who := holder(t, s, inode); !strings.HasPrefix(who, "ws-") {
			t.Fatalf("the socket of %s is held by %q, want a ws replica", c.ws.LocalAddr(), who)
		}
	}
	// Twenty more: the gateway's open sockets do not grow with them.
	for range 20 {
		dialGateway(t, newUser(t, s, "crowd"))
	}
	if after := len(sockets(t, gwPid)); after-before > 5 {
		t.Fatalf("the gateway holds %d sockets with 22 WebSockets open, %d before: it keeps them", after, before)
	}

	send := func(id string) {
		t.Helper()
		if err := a.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: id, Text: "text of " + id}); err != nil {
			t.Fatal(err)
		}
	}
	send("first")
	b.until(t, 20*time.Second, "the first message", func() bool { return len(b.messages(room.ID)) == 1 })
	a.until(t, 20*time.Second, "its ack", func() bool { return len(a.acks) == 1 })
	lastSeen := b.messages(room.ID)[0].Seq

	// Bob drops; what he missed comes back with his resume.
	b.ws.Close()
	for i := range 3 {
		send(fmt.Sprintf("missed-%d", i))
	}
	a.until(t, 20*time.Second, "the acks of the missed ones", func() bool { return len(a.acks) == 4 })
	b2 := newCollector(dialGatewayWith(t, bob, &client.WSOptions{Resume: map[string]int64{room.ID: lastSeen}}))
	b2.until(t, 20*time.Second, "the missed messages", func() bool { return len(b2.messages(room.ID)) == 3 })
	for i, e := range b2.messages(room.ID) {
		if want := fmt.Sprintf("missed-%d", i); e.ClientID != want {
			t.Fatalf("resumed message %d is %q, want %q", i, e.ClientID, want)
		}
	}
	checkOrdered(t, "bob after resume", b2.events[room.ID])

	// The replica's own close code reaches the client.
	if err := bob.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b2.ws.Done():
		if code := client.CloseCode(b2.ws.Err()); code != api.CloseSessionRevoked {
			t.Fatalf("closed with %d (%v), want %d", code, b2.ws.Err(), api.CloseSessionRevoked)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the socket is still open 10 s after logout")
	}
}

// TestAKilledReplicaGetsNoNewConnections kills ws-2: no client dialing
// through the gateway is refused, every socket lands on ws-1, and the
// gateway marks ws-2 down within a second. Restarted, ws-2 gets sockets
// again.
func TestAKilledReplicaGetsNoNewConnections(t *testing.T) {
	s := stack(t, "local")
	ws2 := s.App("ws-2")
	restarted := false
	restart := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		path, err := s.DaprdPath(ctx)
		if err == nil {
			err = ws2.Restart(ctx, path)
		}
		if err != nil {
			t.Errorf("restart ws-2: %v", err)
		}
		restarted = true
	}
	t.Cleanup(func() {
		if !restarted {
			restart()
		}
	})
	users := make([]*user, 10)
	for i := range users {
		users[i] = newUser(t, s, "dialer")
	}
	down := "ws replica is down; not sending it connections"
	logs := tails["local"]

	killed := time.Now()
	ws2.Kill()
	for _, u := range users {
		ws := dialGateway(t, u)
		if who := holder(t, s, serverSocket(t, s, ws.LocalAddr())); who != "ws-1" {
			t.Fatalf("a socket dialed after ws-2 died is held by %q, want ws-1", who)
		}
		ws.Close()
	}
	// When: the time the gateway logged it.
	var markedDown time.Time
	eventually(t, 10*time.Second, "the gateway logs ws-2 down", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			_, js, ok := strings.Cut(line, "| ")
			var l struct {
				Time     time.Time
				Msg      string
				Upstream string
			}
			if ok && json.Unmarshal([]byte(js), &l) == nil && l.Msg == down && l.Upstream == ws2.URL() && l.Time.After(killed) {
				markedDown = l.Time
				return true
			}
		}
		return false
	})
	if d := markedDown.Sub(killed); d > time.Second {
		t.Fatalf("ws-2 marked down %s after the kill, want within a second", d)
	}
	t.Logf("ws-2 marked down %s after the kill", markedDown.Sub(killed).Round(time.Millisecond))

	restart()
	eventually(t, 20*time.Second, "a socket through the gateway lands on ws-2 again", func() bool {
		ws := dialGateway(t, users[0])
		defer ws.Close()
		return holder(t, s, serverSocket(t, s, ws.LocalAddr())) == "ws-2"
	})
}
