package api

import "time"

// WebSocket subprotocol and the prefix of the bearer token carried in
// Sec-WebSocket-Protocol by browsers.
const (
	Subprotocol        = "papo.v1"
	BearerProtocolPref = "bearer."
)

// Frame types, client to server.
const (
	FrameSend   = "send"
	FrameTyping = "typing"
	FrameRead   = "read"
	FrameResume = "resume"
	FrameEdit   = "edit"
	FrameDelete = "delete"
	FrameAuth   = "auth"
	FramePing   = "ping"
)

// Frame types, server to client.
const (
	FrameHello    = "hello"
	FrameEvent    = "event"
	FrameAck      = "ack"
	FramePresence = "presence"
	FrameError    = "error"
	FramePong     = "pong"
	// FrameTyping is also sent server to client.
)

// ClientFrame is any frame a client sends; Type says which fields apply.
type ClientFrame struct {
	Type      string           `json:"type"`
	RoomID    string           `json:"room_id,omitempty"`
	ClientID  string           `json:"client_id,omitempty"`
	Text      string           `json:"text,omitempty"`
	E2EE      *Envelope        `json:"e2ee,omitempty"`
	Seq       int64            `json:"seq,omitempty"`
	TargetSeq int64            `json:"target_seq,omitempty"`
	Rooms     map[string]int64 `json:"rooms,omitempty"`
	Token     string           `json:"token,omitempty"`
}

// RoomCursor is a room and its last seq, as in the hello frame.
type RoomCursor struct {
	RoomID  string `json:"room_id"`
	LastSeq int64  `json:"last_seq"`
}

// HelloFrame is the first frame after the upgrade.
type HelloFrame struct {
	Type      string       `json:"type"`
	UserID    string       `json:"user_id"`
	SessionID string       `json:"session_id"`
	Rooms     []RoomCursor `json:"rooms"`
}

// EventFrame carries one persisted room event.
type EventFrame struct {
	Type  string `json:"type"`
	Event Event  `json:"event"`
}

// AckFrame confirms a send is persisted as Seq.
type AckFrame struct {
	Type     string `json:"type"`
	ClientID string `json:"client_id"`
	RoomID   string `json:"room_id"`
	Seq      int64  `json:"seq"`
}

// TypingFrame says a user is typing in a room.
type TypingFrame struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
	UserID string `json:"user_id"`
}

// PresenceFrame says a user went online or offline.
type PresenceFrame struct {
	Type     string     `json:"type"`
	UserID   string     `json:"user_id"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen"`
}

// ErrorFrame says a frame was refused.
type ErrorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	// RoomIDs lists the rooms a resume was refused for (one error frame
	// per code, however many rooms).
	RoomIDs []string `json:"room_ids,omitempty"`
}

// ServerFrame is any server frame, for clients that decode by type.
type ServerFrame struct {
	Type      string       `json:"type"`
	UserID    string       `json:"user_id,omitempty"`
	SessionID string       `json:"session_id,omitempty"`
	Rooms     []RoomCursor `json:"rooms,omitempty"`
	Event     *Event       `json:"event,omitempty"`
	ClientID  string       `json:"client_id,omitempty"`
	RoomID    string       `json:"room_id,omitempty"`
	Seq       int64        `json:"seq,omitempty"`
	Status    string       `json:"status,omitempty"`
	LastSeen  *time.Time   `json:"last_seen,omitempty"`
	Code      string       `json:"code,omitempty"`
	Message   string       `json:"message,omitempty"`
	Ref       string       `json:"ref,omitempty"`
	RoomIDs   []string     `json:"room_ids,omitempty"`
}

// WebSocket close codes papo uses besides the standard ones (RFC 6455 §7.4).
const (
	CloseGoingAway      = 1001 // server shutting down: reconnect elsewhere
	ClosePolicy         = 1008 // abuse (sustained rate-limit overflow)
	CloseTooBig         = 1009
	CloseSlowConsumer   = 4000 // outgoing queue overflowed or a write deadline was missed
	CloseTokenExpired   = 4001 // the access token expired with no refreshed one
	CloseSessionRevoked = 4002 // logout or refresh-token reuse revoked the session
	CloseTooManyConns   = 4003 // the per-user connection cap was reached
)
