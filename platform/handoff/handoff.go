// Package handoff passes accepted TCP connections from one process to
// another on the same machine: the gateway hands a client's socket, with
// the bytes of the HTTP request it already read from it, to a ws replica,
// and forgets it. The client then talks to the replica directly; the
// gateway holds nothing for it and copies nothing.
//
// The two ends meet at a Unix domain socket (SOCK_SEQPACKET): each hand-off
// is one message carrying the connection's file descriptor (SCM_RIGHTS)
// and the bytes to replay. The receiving end (Listener) is a net.Listener
// whose connections replay those bytes before reading the socket, so an
// http.Server serves a handed-off connection exactly as one it accepted.
//
// Only a process of the same user may hand off: the socket lives in a
// directory only its owner may enter (0700, checked), the socket file is
// 0600, and the receiver checks each sender's user id (SO_PEERCRED on
// Linux). May depend on the standard library and golang.org/x/sys only.
package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxPayload bounds the bytes sent with one connection. A request with
// more (headers over 64 KiB) cannot be handed off; the sender proxies it.
const MaxPayload = 64 << 10

// version is the first byte of every message, so a receiver refuses a
// sender that speaks another format instead of misreading it.
const version = 1

// sendTimeout bounds one hand-off: a receiver that stopped reading its
// socket is treated as gone.
const sendTimeout = 2 * time.Second

// ErrTooLarge is returned by Send for a payload over MaxPayload.
var ErrTooLarge = errors.New("handoff: payload over MaxPayload")

// Sender hands connections to the receiver listening at one socket path.
// It keeps one connection to the receiver, dialed on first use and again
// after the receiver went away. Its methods are safe for concurrent use.
type Sender struct {
	path   string
	onLost func()

	mu     sync.Mutex
	conn   *net.UnixConn
	closed bool
}

// NewSender returns a Sender for the receiver at path. onLost, when not
// nil, is called (on its own goroutine) as soon as a connected receiver
// goes away — its process exited or it closed its listener — so the
// caller can stop choosing it at once.
func NewSender(path string, onLost func()) *Sender {
	return &Sender{path: path, onLost: onLost}
}

// Path is the socket path of the receiver.
func (s *Sender) Path() string { return s.path }

// Connect dials the receiver unless the Sender is connected already.
func (s *Sender) Connect() error {
	_, err := s.connect()
	return err
}

func (s *Sender) connect() (*net.UnixConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, net.ErrClosed
	}
	if s.conn != nil {
		return s.conn, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "unixpacket", s.path)
	if err != nil {
		return nil, fmt.Errorf("handoff: connect to %s: %w", s.path, err)
	}
	uc := c.(*net.UnixConn)
	s.conn = uc
	// The receiver never writes: a read returns only when it goes away.
	go func() {
		var b [1]byte
		_, _ = uc.Read(b[:])
		if s.drop(uc) && s.onLost != nil {
			s.onLost()
		}
	}()
	return uc, nil
}

// drop forgets and closes uc; true when uc was the current connection.
func (s *Sender) drop(uc *net.UnixConn) bool {
	s.mu.Lock()
	current := s.conn == uc
	if current {
		s.conn = nil
	}
	s.mu.Unlock()
	_ = uc.Close()
	return current
}

// Send passes c and payload (the bytes to replay before c's own) to the
// receiver. After a nil error the receiver owns the connection: the
// caller closes its own descriptor of it (c.Close), which leaves the
// connection open. After an error nothing was sent, and c is the caller's
// to use otherwise.
func (s *Sender) Send(c syscall.Conn, payload []byte) error {
	if len(payload) > MaxPayload {
		return ErrTooLarge
	}
	uc, err := s.connect()
	if err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	msg := make([]byte, 1+len(payload))
	msg[0] = version
	copy(msg[1:], payload)
	var n int
	var werr error
	// The descriptor is valid only inside Control.
	if err := rc.Control(func(fd uintptr) {
		_ = uc.SetWriteDeadline(time.Now().Add(sendTimeout))
		n, _, werr = uc.WriteMsgUnix(msg, unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if werr == nil && n != len(msg) {
		werr = fmt.Errorf("short write (%d of %d bytes)", n, len(msg))
	}
	if werr != nil {
		// A message on a SOCK_SEQPACKET socket goes whole or not at all.
		s.drop(uc)
		return fmt.Errorf("handoff: send to %s: %w", s.path, werr)
	}
	return nil
}

// Close closes the connection to the receiver; Send fails afterwards.
func (s *Sender) Close() error {
	s.mu.Lock()
	s.closed = true
	uc := s.conn
	s.conn = nil
	s.mu.Unlock()
	if uc != nil {
		return uc.Close()
	}
	return nil
}

// PrivateDir makes sure dir exists, belongs to this process's user and
// is closed to everyone else (mode 0700), creating it if needed. A
// directory that others may enter is refused, not repaired: it was
// made so on purpose, or by someone else.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("handoff: directory %s is open to other users (mode %04o): it must be 0700", dir, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("handoff: directory %s belongs to user %d, not to this process's user %d", dir, st.Uid, os.Getuid())
	}
	return nil
}

// socketDir is the directory of a socket path, made private.
func socketDir(path string) error { return PrivateDir(filepath.Dir(path)) }
