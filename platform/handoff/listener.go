package handoff

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Listener is a net.Listener of connections handed off by Senders. Each
// accepted connection first reads back the bytes its sender sent with it,
// then the socket itself; RemoteAddr is the client's own address.
type Listener struct {
	ln   *net.UnixListener
	path string
	log  *slog.Logger

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	senders map[*net.UnixConn]struct{}
	wg      sync.WaitGroup
}

// Listen listens for hand-offs at path, a Unix socket in a directory
// only this process's user may enter (PrivateDir; created if missing). A
// socket file left by a process that died is replaced; one another
// process still listens on is an error.
func Listen(path string, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := socketDir(path); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handoff: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("handoff: %w", err)
	}
	l := &Listener{
		ln: ln, path: path, log: log,
		conns:   make(chan net.Conn, 16),
		done:    make(chan struct{}),
		senders: map[*net.UnixConn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptSenders()
	return l, nil
}

// removeStale removes a socket file nobody listens on any more.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("handoff: %s exists and is not a socket", path)
	}
	if c, err := net.Dial("unixpacket", path); err == nil {
		c.Close()
		return fmt.Errorf("handoff: another process listens on %s", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("handoff: remove stale socket: %w", err)
	}
	return nil
}

// Accept returns the next handed-off connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Addr is the Unix socket's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, disconnects every sender (they see the receiver
// gone at once), removes the socket file and closes connections handed
// off but not accepted yet.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close() // also removes the socket file
		l.mu.Lock()
		for uc := range l.senders {
			uc.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
		for {
			select {
			case c := <-l.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

func (l *Listener) acceptSenders() {
	defer l.wg.Done()
	for {
		uc, err := l.ln.AcceptUnix()
		if err != nil {
			select {
			case <-l.done:
			default:
				l.log.Error("hand-off listener failed", "path", l.path, "err", err)
			}
			return
		}
		if err := checkPeer(uc); err != nil {
			l.log.Warn("hand-off refused", "path", l.path, "err", err)
			uc.Close()
			continue
		}
		l.mu.Lock()
		select {
		case <-l.done:
			l.mu.Unlock()
			uc.Close()
			return
		default:
		}
		l.senders[uc] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.receive(uc)
	}
}

// receive reads one sender's hand-offs until it disconnects.
func (l *Listener) receive(uc *net.UnixConn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.senders, uc)
		l.mu.Unlock()
		uc.Close()
	}()
	buf := make([]byte, 1+MaxPayload)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room for a few descriptors, so extra ones are seen and closed
	for {
		n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return // the sender went away, or Close
		}
		fds, ferr := descriptors(oob[:oobn])
		c, err := l.conn(buf[:n], flags, fds, ferr)
		if err != nil {
			l.log.Warn("hand-off dropped", "path", l.path, "err", err)
			continue
		}
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
			return
		}
	}
}

// descriptors returns the file descriptors carried by a control message.
func descriptors(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// conn turns one message into a connection. Every descriptor received is
// either inside the connection or closed.
func (l *Listener) conn(msg []byte, flags int, fds []int, ferr error) (net.Conn, error) {
	closeAll := func(fds []int) {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	switch {
	case ferr != nil:
		closeAll(fds)
		return nil, fmt.Errorf("control message: %w", ferr)
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		closeAll(fds)
		return nil, errors.New("message truncated")
	case len(fds) != 1:
		closeAll(fds)
		return nil, fmt.Errorf("%d descriptors in one message, want 1", len(fds))
	case msg[0] != version:
		closeAll(fds)
		return nil, fmt.Errorf("message version %d, want %d", msg[0], version)
	}
	f := os.NewFile(uintptr(fds[0]), "handoff")
	nc, err := net.FileConn(f) // a duplicate; f is closed below
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("received descriptor: %w", err)
	}
	replay := append([]byte(nil), msg[1:]...)
	return &conn{Conn: nc, replay: replay}, nil
}

// conn is a handed-off connection: Read returns the replayed bytes first.
type conn struct {
	net.Conn
	replay []byte
}

func (c *conn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		if len(c.replay) == 0 {
			c.replay = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the underlying socket (after the replayed bytes are
// read, reading it directly is the same as reading c).
func (c *conn) NetConn() net.Conn { return c.Conn }
