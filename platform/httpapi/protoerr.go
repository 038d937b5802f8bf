package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"syscall"
)

// net/http answers a request it cannot parse before any handler runs —
// headers over MaxHeaderBytes (431), a malformed request line or header
// (400), an unknown transfer encoding (501), an HTTP version it does not
// speak (505) — by writing a plain-text answer straight to the connection,
// in one write of exactly this shape. No answer of a handler has it:
// net/http adds a Date header to those.
var goProtocolError = regexp.MustCompile(`\AHTTP/1\.1 ([0-9]{3}) [^\r\n]*\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n([^\r\n]*)\z`)

// protocolErrorCodes are papo's codes for net/http's own refusals.
var protocolErrorCodes = map[int]string{
	http.StatusRequestHeaderFieldsTooLarge: "headers_too_large",
	http.StatusNotImplemented:              "unsupported_transfer_encoding",
	http.StatusHTTPVersionNotSupported:     "unsupported_http_version",
}

// JSONProtocolErrors wraps ln so that net/http's own plain-text refusals
// (goProtocolError) leave as papo's JSON error body with the same status,
// like every other error. It sees the bytes net/http writes, so it works
// for plain HTTP only: under TLS the connection carries ciphertext and
// those refusals stay plain text.
func JSONProtocolErrors(ln net.Listener) net.Listener { return protoErrListener{ln} }

type protoErrListener struct{ net.Listener }

func (l protoErrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &protoErrConn{Conn: c}, nil
}

// protoErrConn rewrites a write that is one of net/http's refusals. Such
// a write is the connection's last (net/http closes it right after).
type protoErrConn struct{ net.Conn }

func (c *protoErrConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) || !bytes.Contains(p, []byte("\r\nConnection: close\r\n\r\n")) {
		return c.Conn.Write(p)
	}
	m := goProtocolError.FindSubmatch(p)
	if m == nil {
		return c.Conn.Write(p)
	}
	status, _ := strconv.Atoi(string(m[1]))
	code, ok := protocolErrorCodes[status]
	if !ok {
		code = "bad_request"
	}
	body, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: code, Message: string(m[2])}})
	body = append(body, '\n')
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/json\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("X-Content-Type-Options: nosniff\r\n")
	b.WriteString("Cache-Control: no-store\r\n")
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(body)
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Unwrap returns the connection the listener accepted.
func (c *protoErrConn) Unwrap() net.Conn { return c.Conn }

// SyscallConn is the accepted connection's, so a hijacked connection can
// still be handed to another process (its file descriptor passed on).
func (c *protoErrConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("the connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// CloseWrite half-closes the accepted connection, when it can.
func (c *protoErrConn) CloseWrite() error {
	hc, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.New("the connection cannot half-close")
	}
	return hc.CloseWrite()
}
