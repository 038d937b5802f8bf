package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/papochat/papo/api"
)

// WSOptions tune DialWS.
type WSOptions struct {
	// Origin is sent as the Origin header, as a browser would.
	Origin string
	// AuthorizationHeader sends the token as "Authorization: Bearer"
	// instead of in Sec-WebSocket-Protocol (the browser way, the default).
	AuthorizationHeader bool
	// Buffer is how many received frames wait for Read (default 4096);
	// when it is full the client stops reading the socket.
	Buffer int
	// Resume is what DialWS resumes right after hello, as the socket's
	// first frame: the last seq seen per room. Live delivery starts with
	// it (docs/protocol.md); nil resumes nothing, {"rooms":{}}.
	Resume map[string]int64
	// NoResume sends nothing after hello: the server then holds live
	// events until the client's first frame, or WS_LIVE_HOLD.
	NoResume bool
	// Header adds handshake headers: tests that dial a ws replica
	// directly, past the gateway, send its app API token here.
	Header http.Header
	// TLSConfig is the TLS configuration of a wss:// dial (e.g. the CA
	// to trust); nil: the system's roots. Client.DialWS takes its HTTP
	// client's when this is nil.
	TLSConfig *tls.Config
}

// WS is a WebSocket connection to papo's /ws. One goroutine reads the
// socket into a buffer that Read drains, so a Read that times out leaves
// the connection usable. Send and Read are safe for concurrent use.
type WS struct {
	conn *websocket.Conn
	// Hello is the first frame the server sent.
	Hello api.HelloFrame
	// Subprotocol is the subprotocol the server chose.
	Subprotocol string

	wmu    sync.Mutex
	frames chan []byte
	done   chan struct{}
	err    error // why reading stopped; set before done is closed
}

// DialWS opens the WebSocket of the gateway (or ws replica) at c.BaseURL
// with c.Token and waits for the hello frame.
func (c *Client) DialWS(ctx context.Context, opts *WSOptions) (*WS, error) {
	u := c.BaseURL
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	if tr, ok := c.HTTP.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil && (opts == nil || opts.TLSConfig == nil) {
		withTLS := WSOptions{}
		if opts != nil {
			withTLS = *opts
		}
		withTLS.TLSConfig = tr.TLSClientConfig
		opts = &withTLS
	}
	return DialWS(ctx, u+"/ws", c.Token, opts)
}

// DialWS opens a papo WebSocket at url (ws:// or wss://) with an access
// token, waits for the hello frame and sends the resume of opts.Resume
// (unless opts.NoResume). A refused handshake is an *Error
// with the HTTP status and papo's error code.
func DialWS(ctx context.Context, url, token string, opts *WSOptions) (*WS, error) {
	if opts == nil {
		opts = &WSOptions{}
	}
	h := opts.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if opts.Origin != "" {
		h.Set("Origin", opts.Origin)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if opts.TLSConfig != nil {
		// A WebSocket handshake is HTTP/1.1: a configuration shared with
		// an http.Transport offers h2 too, which the server would pick.
		d.TLSClientConfig = opts.TLSConfig.Clone()
		d.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	if opts.AuthorizationHeader {
		h.Set("Authorization", "Bearer "+token)
		d.Subprotocols = []string{api.Subprotocol}
	} else {
		d.Subprotocols = []string{api.Subprotocol, api.BearerProtocolPref + token}
	}
	conn, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			e := &Error{Status: resp.StatusCode}
			var eb api.ErrorResponse
			if json.NewDecoder(resp.Body).Decode(&eb) == nil {
				e.Code, e.Message = eb.Error.Code, eb.Error.Message
			}
			return nil, e
		}
		return nil, err
	}
	n := opts.Buffer
	if n <= 0 {
		n = 4096
	}
	w := &WS{conn: conn, Subprotocol: conn.Subprotocol(), frames: make(chan []byte, n), done: make(chan struct{})}
	go w.readLoop()
	f, err := w.Read(ctx)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	if f.Type != api.FrameHello {
		_ = conn.Close()
		return nil, fmt.Errorf("first frame is %q, not hello", f.Type)
	}
	w.Hello = api.HelloFrame{Type: f.Type, UserID: f.UserID, SessionID: f.SessionID, Rooms: f.Rooms}
	if !opts.NoResume {
		rooms := opts.Resume
		if rooms == nil {
			rooms = map[string]int64{}
		}
		// ClientFrame omits an empty rooms, which the server refuses.
		b, _ := json.Marshal(struct {
			Type  string           `json:"type"`
			Rooms map[string]int64 `json:"rooms"`
		}{api.FrameResume, rooms})
		if err := w.WriteRaw(b); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("send resume: %w", err)
		}
	}
	return w, nil
}

// LocalAddr is the client's end of the socket.
func (w *WS) LocalAddr() net.Addr { return w.conn.LocalAddr() }

func (w *WS) readLoop() {
	defer close(w.done)
	for {
		_, b, err := w.conn.ReadMessage()
		if err != nil {
			w.err = err
			return
		}
		w.frames <- b
	}
}

// Read returns the next frame, waiting until ctx ends. After the socket
// closes, Read returns the remaining frames and then the close error (see
// CloseCode).
func (w *WS) Read(ctx context.Context) (api.ServerFrame, error) {
	b, err := w.ReadRaw(ctx)
	if err != nil {
		return api.ServerFrame{}, err
	}
	var f api.ServerFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("decode frame %q: %w", b, err)
	}
	return f, nil
}

// ReadRaw is Read without decoding.
func (w *WS) ReadRaw(ctx context.Context) ([]byte, error) {
	select {
	case b := <-w.frames:
		return b, nil
	default:
	}
	select {
	case b := <-w.frames:
		return b, nil
	case <-w.done:
		select {
		case b := <-w.frames:
			return b, nil
		default:
			return nil, w.err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send writes one frame.
func (w *WS) Send(f api.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return w.WriteRaw(b)
}

// WriteRaw writes b as one text frame, as is (tests send malformed ones).
func (w *WS) WriteRaw(b []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return w.conn.WriteMessage(websocket.TextMessage, b)
}

// Done is closed when the socket stopped reading (closed by either side).
func (w *WS) Done() <-chan struct{} { return w.done }

// Err is why the socket stopped reading, once Done is closed.
func (w *WS) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Close closes the socket with 1000 normal closure.
func (w *WS) Close() error {
	w.wmu.Lock()
	_ = w.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	w.wmu.Unlock()
	return w.conn.Close()
}

// CloseCode returns the close code in a read error (see Read), or 0 when
// the socket ended without a close frame.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
