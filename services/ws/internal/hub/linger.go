package hub

import (
	"io"
	"net"
	"time"
)

// Limits of lingerClose: enough for any frame a client could mean to
// send, little enough that an abuser gains nothing by it.
const (
	lingerFor   = 2 * time.Second
	lingerBytes = 16 << 20
)

// lingerClose closes a socket whose client is still writing (a frame over
// the hard limit, cut off mid-way) without a TCP reset. Closing a socket
// with unread bytes makes the kernel answer with RST instead of FIN, and
// a proxy in front (the gateway's relay, a load balancer) then drops the
// 1009 close frame it has not forwarded yet, or a client's kernel the
// frame it has not read. So the close frame (already written) is followed
// by a half-close, and the rest of the client's bytes are read and
// dropped until it closes its side, within lingerFor and lingerBytes.
func lingerClose(nc net.Conn) {
	if hc, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(lingerFor))
	_, _ = io.CopyN(io.Discard, nc, lingerBytes)
	_ = nc.Close()
}
