package handoff_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/platform/handoff"
)

// socketPath is a socket in a fresh private directory. t.TempDir can be
// too long for a Unix socket path (108 bytes), so it lives under /tmp.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "handoff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ws.sock")
}

// serve runs an http.Server on a hand-off listener at path and returns
// the listener; the handler answers with the client address it sees.
func serve(t *testing.T, path string) *handoff.Listener {
	t.Helper()
	ln, err := handoff.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); ln.Close() })
	return ln
}

// gateway accepts one TCP connection, reads its request line and headers
// as a gateway would, and returns the socket with those bytes.
func gateway(t *testing.T) (client net.Conn, accepted *net.TCPConn, read []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	req := "GET /ws HTTP/1.1\r\nHost: papo\r\n\r\n"
	if _, err := io.WriteString(client, req); err != nil {
		t.Fatal(err)
	}
	read = make([]byte, len(req))
	if _, err := io.ReadFull(c, read); err != nil {
		t.Fatal(err)
	}
	return client, c.(*net.TCPConn), read
}

func readResponse(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAHandedOffConnectionIsServedAsTheClientsOwn(t *testing.T) {
	path := socketPath(t)
	serve(t, path)
	client, accepted, read := gateway(t)

	s := handoff.NewSender(path, nil)
	defer s.Close()
	if err := s.Send(accepted, read); err != nil {
		t.Fatal(err)
	}
	accepted.Close() // the gateway forgets it; the connection stays open

	r := bufio.NewReader(client)
	if got, want := readResponse(t, r), "GET /ws from "+client.LocalAddr().String(); got != want {
		t.Fatalf("got %q, want %q: the replayed request, answered to the client's own address", got, want)
	}
	// The connection belongs to the receiver now: a second request on it
	// goes there too.
	if _, err := io.WriteString(client, "GET /again HTTP/1.1\r\nHost: papo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := readResponse(t, r); !strings.HasPrefix(got, "GET /again from ") {
		t.Fatalf("second request answered %q", got)
	}
}

func TestTheSenderLearnsAtOnceThatTheReceiverWentAwayAndReconnects(t *testing.T) {
	path := socketPath(t)
	ln := serve(t, path)
	var lost atomic.Int32
	s := handoff.NewSender(path, func() { lost.Add(1) })
	defer s.Close()
	if err := s.Connect(); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	deadline := time.Now().Add(time.Second)
	for lost.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("onLost not called within a second of the receiver closing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v, want it removed", err)
	}
	_, accepted, read := gateway(t)
	if err := s.Send(accepted, read); err == nil {
		t.Fatal("Send succeeded with no receiver")
	}

	serve(t, path) // the replica is back
	client, accepted, read := gateway(t)
	if err := s.Send(accepted, read); err != nil {
		t.Fatalf("Send after the receiver came back: %v", err)
	}
	accepted.Close()
	if got := readResponse(t, bufio.NewReader(client)); !strings.HasPrefix(got, "GET /ws from ") {
		t.Fatalf("got %q", got)
	}
}

func TestPayloadOverTheLimitIsNotSent(t *testing.T) {
	path := socketPath(t)
	serve(t, path)
	_, accepted, _ := gateway(t)
	s := handoff.NewSender(path, nil)
	defer s.Close()
	if err := s.Send(accepted, make([]byte, handoff.MaxPayload+1)); !errors.Is(err, handoff.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestMalformedMessagesAreDroppedAndTheListenerGoesOn(t *testing.T) {
	path := socketPath(t)
	serve(t, path)
	raw, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// No descriptor, then a wrong version.
	for _, msg := range [][]byte{{1, 'G', 'E', 'T'}, {9, 'G', 'E', 'T'}} {
		if _, err := raw.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	client, accepted, read := gateway(t)
	s := handoff.NewSender(path, nil)
	defer s.Close()
	if err := s.Send(accepted, read); err != nil {
		t.Fatal(err)
	}
	accepted.Close()
	if got := readResponse(t, bufio.NewReader(client)); !strings.HasPrefix(got, "GET /ws from ") {
		t.Fatalf("got %q", got)
	}
}

func TestTheSocketDirectoryMustBePrivate(t *testing.T) {
	dir, err := os.MkdirTemp("", "handoff-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := handoff.Listen(filepath.Join(dir, "ws.sock"), nil); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Fatalf("listen in a 0755 directory: %v, want refused", err)
	}

	// A missing directory is created private, and the socket is 0600.
	path := filepath.Join(dir, "private", "ws.sock")
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := handoff.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %04o, want %04o", p, got, want)
		}
	}
}

func TestAStaleSocketIsReplacedAndALiveOneIsNot(t *testing.T) {
	path := socketPath(t)
	// A socket file left behind by a process that died.
	dead, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	ln, err := handoff.Listen(path, nil)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer ln.Close()
	if _, err := handoff.Listen(path, nil); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Fatalf("second listener on a live socket: %v, want refused", err)
	}
}

func TestCloseEndsAccept(t *testing.T) {
	path := socketPath(t)
	ln, err := handoff.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() { _, err := ln.Accept(); accepted <- err }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ln.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Accept did not return after Close")
	}
}
