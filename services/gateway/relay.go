package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// relay copies a relayed WebSocket both ways between the client and a ws
// replica, one goroutine per direction. An idle direction holds no
// buffer: it waits for its socket to become readable and only then
// borrows one from relayBuffers (see copyConn), so 10,000 idle sockets
// cost two parked goroutines and two connections each, not 64 KiB.
type relay struct {
	p                *wsProxy
	client, upstream net.Conn
	left             atomic.Int32 // directions still copying
	once             sync.Once
}

// relayBufferSize is what one read takes at most: a burst of frames.
const relayBufferSize = 16 << 10

var relayBuffers = sync.Pool{New: func() any { return new([relayBufferSize]byte) }}

// lingerAfterEOF is how long the other direction may go on after one
// side closed its half: the WebSocket closing handshake, not a hang.
const lingerAfterEOF = 5 * time.Second

func (p *wsProxy) startRelay(client, upstream net.Conn) {
	rl := &relay{p: p, client: client, upstream: upstream}
	rl.left.Store(2)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		upstream.Close()
		return
	}
	p.relays[rl] = struct{}{}
	p.mu.Unlock()
	go rl.run(upstream, client)
	go rl.run(client, upstream)
}

// run copies src to dst. A clean end closes dst's write half (the peer
// sees it) and gives the other direction lingerAfterEOF to finish; an
// error ends both. The last direction to end closes the relay.
func (rl *relay) run(dst, src net.Conn) {
	err := copyConn(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = dst.SetReadDeadline(time.Now().Add(lingerAfterEOF))
	} else {
		rl.close()
	}
	if rl.left.Add(-1) == 0 {
		rl.close()
	}
}

func (rl *relay) close() {
	rl.once.Do(func() {
		_ = rl.client.Close()
		_ = rl.upstream.Close()
		rl.p.mu.Lock()
		delete(rl.p.relays, rl)
		rl.p.mu.Unlock()
	})
}

// copyConn copies src to dst until src ends (nil) or either fails.
func copyConn(dst, src net.Conn) error {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return copyBlocking(dst, src)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var buf *[relayBufferSize]byte
		var n int
		var rerr error
		// Read calls the function when src may be readable and waits
		// (holding nothing) while it returns false.
		err := rc.Read(func(fd uintptr) bool {
			b := relayBuffers.Get().(*[relayBufferSize]byte)
			for {
				n, rerr = syscall.Read(int(fd), b[:])
				if rerr != syscall.EINTR {
					break
				}
			}
			if rerr == syscall.EAGAIN {
				relayBuffers.Put(b)
				return false
			}
			buf = b
			return true
		})
		if err != nil {
			return err
		}
		if rerr != nil || n <= 0 {
			relayBuffers.Put(buf)
			return rerr // nil at the end of src
		}
		_, werr := dst.Write(buf[:n])
		relayBuffers.Put(buf)
		if werr != nil {
			return werr
		}
	}
}

// copyBlocking is copyConn for a source without a descriptor to wait on
// (a *tls.Conn, whose records are decrypted into its own buffers): it
// keeps a small buffer for the connection's life.
func copyBlocking(dst, src net.Conn) error {
	buf := make([]byte, 2048)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
