// Package api holds the types of papo's public contract v1 (docs/api.md):
// the JSON bodies of the REST API and the frames of the WebSocket protocol.
// Services, the Go client and the tests share them, so the contract is
// written once.
package api

import (
	"time"

	"github.com/papochat/papo/api/validate"
)

// Event types in a room's log.
const (
	EventMessage      = "message"
	EventEdit         = "edit"
	EventDelete       = "delete"
	EventMemberJoined = "member_joined"
	EventMemberLeft   = "member_left"
)

// Event is one entry of a room's log. Seq starts at 1 in every room and has
// no gaps.
type Event struct {
	RoomID   string `json:"room_id"`
	Seq      int64  `json:"seq"`
	Type     string `json:"type"`
	ID       string `json:"id"`
	SenderID string `json:"sender_id"`
	ClientID string `json:"client_id,omitempty"`
	Text     string `json:"text,omitempty"`
	// E2EE is the envelope of a message or edit in an encrypted DM, in
	// place of Text (docs/e2ee.md).
	E2EE      *Envelope `json:"e2ee,omitempty"`
	TargetSeq int64     `json:"target_seq,omitempty"`
	UserID    string    `json:"user_id,omitempty"` // member_joined / member_left: who
	CreatedAt time.Time `json:"created_at"`
}

// User is a public user record.
type User struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
}

// Room kinds.
const (
	RoomPublic  = "public"
	RoomPrivate = "private"
	RoomDM      = "dm"
)

// Room is a room as the API shows it. ReadSeq and Unread are set in the
// caller's room list.
type Room struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	LastSeq   int64     `json:"last_seq"`
	ReadSeq   int64     `json:"read_seq"`
	Unread    int64     `json:"unread"`
	// Members is set for DMs (the pair) and in room details.
	Members []string `json:"members,omitempty"`
	// Encrypted marks an end-to-end encrypted DM (docs/e2ee.md): its
	// messages carry envelopes, never text. Fixed at creation.
	Encrypted bool `json:"encrypted,omitempty"`
	// MemberCount is how many members the room has (absent for a room
	// made before papo counted them).
	MemberCount int64 `json:"member_count,omitempty"`
}

// RegisterRequest is the body of POST /api/v1/auth/register.
type RegisterRequest struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name,omitempty"`
}

// LoginRequest is the body of POST /api/v1/auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// RefreshRequest is the body of POST /api/v1/auth/refresh.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// TokenResponse answers login and refresh.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	User         User   `json:"user"`
}

// UserResponse wraps one user.
type UserResponse struct {
	User User `json:"user"`
}

// CreateRoomRequest is the body of POST /api/v1/rooms.
type CreateRoomRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// ClientID (optional, at most MaxClientIDLen characters) makes the
	// creation safe to retry: the same creator and client_id name the same
	// room.
	ClientID string `json:"client_id,omitempty"`
}

// RoomResponse wraps one room.
type RoomResponse struct {
	Room Room `json:"room"`
}

// RoomsResponse wraps a list of rooms. NextCursor, in a page of the public
// room list, is the cursor of the next page (absent at the end).
type RoomsResponse struct {
	Rooms      []Room `json:"rooms"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Invitation is a pending invitation to a private room: UserID is invited
// by InvitedBy. The invitee accepts by joining the room (POST
// /api/v1/rooms/{id}/join) or declines (POST /api/v1/rooms/{id}/decline).
type Invitation struct {
	Room      Room      `json:"room"`
	UserID    string    `json:"user_id"`
	InvitedBy string    `json:"invited_by"`
	CreatedAt time.Time `json:"created_at"`
}

// InvitationsResponse answers GET /api/v1/rooms/invitations: the caller's
// pending invitations, newest first.
type InvitationsResponse struct {
	Invitations []Invitation `json:"invitations"`
}

// AddMemberResponse answers POST /api/v1/rooms/{id}/members: the room and,
// for a private room, the invitation made (the user is not a member until
// accepting it).
type AddMemberResponse struct {
	Room       Room        `json:"room"`
	Invitation *Invitation `json:"invitation,omitempty"`
}

// AddMemberRequest is the body of POST /api/v1/rooms/{id}/members.
type AddMemberRequest struct {
	UserID string `json:"user_id"`
}

// DMRequest is the body of POST /api/v1/dms.
type DMRequest struct {
	UserID string `json:"user_id"`
	// Encrypted asks for the pair's end-to-end encrypted DM, a different
	// room from their plaintext DM.
	Encrypted bool `json:"encrypted,omitempty"`
}

// EventsResponse answers a history query.
type EventsResponse struct {
	Events  []Event `json:"events"`
	LastSeq int64   `json:"last_seq"`
}

// SendRequest is the body of POST /api/v1/rooms/{id}/messages.
type SendRequest struct {
	Text     string    `json:"text,omitempty"`
	E2EE     *Envelope `json:"e2ee,omitempty"`
	ClientID string    `json:"client_id"`
}

// SendResponse answers POST /api/v1/rooms/{id}/messages (202). Seq is
// the message's seq once stored (also for a repeated client_id); absent
// when the message service could not reach its store and queued the send
// (it is stored, and announced, when it can be).
type SendResponse struct {
	RoomID   string `json:"room_id"`
	ClientID string `json:"client_id"`
	Seq      int64  `json:"seq,omitempty"`
}

// ReadRequest is the body of POST /api/v1/rooms/{id}/read.
type ReadRequest struct {
	Seq int64 `json:"seq"`
}

// Presence statuses.
const (
	Online  = "online"
	Offline = "offline"
)

// Presence is one user's presence.
type Presence struct {
	UserID   string     `json:"user_id"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen"`
}

// PresenceResponse answers GET /api/v1/presence.
type PresenceResponse struct {
	Presence []Presence `json:"presence"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Limits of the contract. The rules for text, ids and names are in
// package validate.
const (
	MaxTextRunes   = validate.MaxText
	MaxClientIDLen = validate.MaxClientID
	MaxRoomName    = validate.MaxName
	MaxPageLimit   = 200
	DefaultLimit   = 50
	// MaxTokenBytes caps an access or refresh token as a client sends it;
	// a longer one is refused before any parsing (papo's own tokens are
	// under 1 KiB, an external issuer's a few).
	MaxTokenBytes = 8 << 10
)

// Service states in ServiceStatus.
const (
	ServiceUp   = "up"
	ServiceDown = "down"
)

// ServiceStatus answers GET /api/v1/status: each service ("gateway" is
// the gateway's own sidecar) is ServiceUp or ServiceDown; Status is "ok"
// when all are up, "degraded" otherwise.
type ServiceStatus struct {
	Status   string            `json:"status"`
	Services map[string]string `json:"services"`
}
