package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
)

// socket is a lean client WebSocket: the goroutine that reads it handles
// each frame in place (no second goroutine, no channel), reusing one
// buffer, since the load client reads up to tens of thousands of frames a
// second on the machine it measures.
type socket struct {
	conn   *websocket.Conn
	userID string
	buf    []byte

	wmu sync.Mutex
}

// dialSocket opens the gateway's /ws with token and reads the hello frame.
func dialSocket(ctx context.Context, baseURL, token string) (*socket, error) {
	u := strings.Replace(strings.Replace(baseURL, "https://", "wss://", 1), "http://", "ws://", 1) + "/ws"
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Subprotocols: []string{api.Subprotocol}}
	h := http.Header{"Authorization": {"Bearer " + token}}
	conn, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (%s)", err, resp.Status)
		}
		return nil, err
	}
	s := &socket{conn: conn, buf: make([]byte, 0, 1024)}
	b, err := s.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	if !strings.Contains(string(b), `"type":"hello"`) {
		conn.Close()
		return nil, fmt.Errorf("first frame is not hello: %.100s", b)
	}
	s.userID = stringField(b, []byte(`"user_id":"`))
	return s, nil
}

// read returns the next text frame; the slice is valid until the next read.
func (s *socket) read() ([]byte, error) {
	for {
		typ, r, err := s.conn.NextReader()
		if err != nil {
			return nil, err
		}
		if typ != websocket.TextMessage {
			continue
		}
		s.buf = s.buf[:0]
		for {
			if len(s.buf) == cap(s.buf) {
				s.buf = append(s.buf, 0)[:len(s.buf)]
			}
			n, err := r.Read(s.buf[len(s.buf):cap(s.buf)])
			s.buf = s.buf[:len(s.buf)+n]
			if errors.Is(err, io.EOF) {
				return s.buf, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
}

// write sends one text frame.
func (s *socket) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return s.conn.WriteMessage(websocket.TextMessage, b)
}

// close closes the socket with 1000.
func (s *socket) close() {
	s.wmu.Lock()
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	s.wmu.Unlock()
	_ = s.conn.Close()
}
