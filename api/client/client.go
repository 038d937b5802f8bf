// Package client is a Go client for papo's public API v1: the REST calls
// (this file) and the WebSocket (ws.go). Tests, benchmarks and bots use it;
// it speaks only what docs/api.md documents.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/papochat/papo/api"
)

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the Retry-After of a 429.
	RetryAfter string
}

func (e *Error) Error() string {
	return fmt.Sprintf("papo: %d %s: %s", e.Status, e.Code, e.Message)
}

// Client calls one papo gateway as one user (or anonymously before login).
type Client struct {
	BaseURL string
	HTTP    *http.Client
	// Token is the access token sent as a bearer token.
	Token string
}

// New returns a Client for the gateway at baseURL.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Do sends a JSON request and decodes a JSON answer into out when out is
// not nil. Any status of 300 or more is returned as an *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb api.ErrorResponse
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &Error{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
		} else {
			e.Message = strings.TrimSpace(string(raw))
		}
		return e
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Register creates an account.
func (c *Client) Register(ctx context.Context, username, password, displayName string) (api.User, error) {
	var out api.UserResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/auth/register",
		api.RegisterRequest{Username: username, Password: password, DisplayName: displayName}, &out)
	return out.User, err
}

// Login logs in and keeps the access token for later calls.
func (c *Client) Login(ctx context.Context, username, password string) (api.TokenResponse, error) {
	var out api.TokenResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/auth/login", api.LoginRequest{Username: username, Password: password}, &out)
	if err == nil {
		c.Token = out.AccessToken
	}
	return out, err
}

// Refresh trades a refresh token for new tokens and keeps the access token.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (api.TokenResponse, error) {
	var out api.TokenResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/auth/refresh", api.RefreshRequest{RefreshToken: refreshToken}, &out)
	if err == nil {
		c.Token = out.AccessToken
	}
	return out, err
}

// Logout revokes the session.
func (c *Client) Logout(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/auth/logout", nil, nil)
}

// Me returns the logged-in user.
func (c *Client) Me(ctx context.Context) (api.User, error) {
	var out api.UserResponse
	err := c.Do(ctx, http.MethodGet, "/api/v1/me", nil, &out)
	return out.User, err
}

// CreateRoom creates a room; the caller becomes a member.
func (c *Client) CreateRoom(ctx context.Context, name, kind string) (api.Room, error) {
	var out api.RoomResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/rooms", api.CreateRoomRequest{Name: name, Kind: kind}, &out)
	return out.Room, err
}

// JoinRoom joins a room.
func (c *Client) JoinRoom(ctx context.Context, roomID string) (api.Room, error) {
	var out api.RoomResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/join", nil, &out)
	return out.Room, err
}

// LeaveRoom leaves a room.
func (c *Client) LeaveRoom(ctx context.Context, roomID string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/leave", nil, nil)
}

// AddMember adds a user to a public room the caller is in, or invites
// the user to a private one (the user joins by accepting).
func (c *Client) AddMember(ctx context.Context, roomID, userID string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/members", api.AddMemberRequest{UserID: userID}, nil)
}

// Invitations lists the caller's pending invitations to private rooms,
// newest first. JoinRoom accepts one; DeclineInvitation declines it.
func (c *Client) Invitations(ctx context.Context) ([]api.Invitation, error) {
	var out api.InvitationsResponse
	err := c.Do(ctx, http.MethodGet, "/api/v1/rooms/invitations", nil, &out)
	return out.Invitations, err
}

// DeclineInvitation declines the caller's invitation to a room.
func (c *Client) DeclineInvitation(ctx context.Context, roomID string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/decline", nil, nil)
}

// OpenDM returns the DM room with userID.
func (c *Client) OpenDM(ctx context.Context, userID string) (api.Room, error) {
	var out api.RoomResponse
	err := c.Do(ctx, http.MethodPost, "/api/v1/dms", api.DMRequest{UserID: userID}, &out)
	return out.Room, err
}

// Rooms lists the caller's rooms.
func (c *Client) Rooms(ctx context.Context) ([]api.Room, error) {
	var out api.RoomsResponse
	err := c.Do(ctx, http.MethodGet, "/api/v1/rooms", nil, &out)
	return out.Rooms, err
}

// PublicRooms lists the first page of public rooms, newest first;
// PublicRoomsPage pages through them all.
func (c *Client) PublicRooms(ctx context.Context) ([]api.Room, error) {
	var out api.RoomsResponse
	err := c.Do(ctx, http.MethodGet, "/api/v1/rooms/public", nil, &out)
	return out.Rooms, err
}

// PublicRoomsPage lists up to limit public rooms (0: the server's
// default) from cursor ("" for the newest); next is the cursor of the
// following page, "" at the end.
func (c *Client) PublicRoomsPage(ctx context.Context, cursor string, limit int) (rooms []api.Room, next string, err error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out api.RoomsResponse
	err = c.Do(ctx, http.MethodGet, "/api/v1/rooms/public?"+q.Encode(), nil, &out)
	return out.Rooms, out.NextCursor, err
}

// EventsAfter returns up to limit events with seq > after, ascending.
func (c *Client) EventsAfter(ctx context.Context, roomID string, after int64, limit int) (api.EventsResponse, error) {
	return c.events(ctx, roomID, "after", after, limit)
}

// EventsBefore returns up to limit events just below before, ascending.
func (c *Client) EventsBefore(ctx context.Context, roomID string, before int64, limit int) (api.EventsResponse, error) {
	return c.events(ctx, roomID, "before", before, limit)
}

func (c *Client) events(ctx context.Context, roomID, dir string, seq int64, limit int) (api.EventsResponse, error) {
	q := url.Values{dir: {strconv.FormatInt(seq, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out api.EventsResponse
	err := c.Do(ctx, http.MethodGet, "/api/v1/rooms/"+url.PathEscape(roomID)+"/events?"+q.Encode(), nil, &out)
	return out, err
}

// Send submits a message over REST (202: persisted asynchronously).
func (c *Client) Send(ctx context.Context, roomID, clientID, text string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/messages",
		api.SendRequest{Text: text, ClientID: clientID}, nil)
}

// MarkRead moves the caller's read marker in a room.
func (c *Client) MarkRead(ctx context.Context, roomID string, seq int64) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/rooms/"+url.PathEscape(roomID)+"/read", api.ReadRequest{Seq: seq}, nil)
}

// Presence returns the presence of users.
func (c *Client) Presence(ctx context.Context, userIDs ...string) ([]api.Presence, error) {
	var out api.PresenceResponse
	err := c.Do(ctx, http.MethodGet, "/api/v1/presence?user_ids="+url.QueryEscape(strings.Join(userIDs, ",")), nil, &out)
	return out.Presence, err
}
