// Package upstream calls the services the ws service depends on (message
// and auth) through Dapr service invocation, implementing hub.Messages and
// hub.Sessions. It may depend on api and platform only.
package upstream

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/invoke"
)

// Messages calls the message service's internal routes.
type Messages struct {
	Invoke *invoke.Client
	AppID  string // "message"
}

type cursorsResponse struct {
	Rooms []api.RoomCursor `json:"rooms"`
}

// UserRooms is GET /internal/v1/users/{uid}/rooms.
func (m Messages) UserRooms(ctx context.Context, userID string) ([]api.RoomCursor, error) {
	var out cursorsResponse
	err := m.Invoke.Do(ctx, m.AppID, http.MethodGet, "/internal/v1/users/"+url.PathEscape(userID)+"/rooms", nil, nil, &out)
	return out.Rooms, err
}

// EventsAfter is GET /internal/v1/rooms/{id}/events?after=&limit=.
func (m Messages) EventsAfter(ctx context.Context, roomID string, after int64, limit int) ([]api.Event, error) {
	var out api.EventsResponse
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	err := m.Invoke.Do(ctx, m.AppID, http.MethodGet, "/internal/v1/rooms/"+url.PathEscape(roomID)+"/events?"+q.Encode(), nil, nil, &out)
	return out.Events, err
}

type readRequest struct {
	UserID string `json:"user_id"`
	Seq    int64  `json:"seq"`
}

// MarkRead is POST /internal/v1/rooms/{id}/read.
func (m Messages) MarkRead(ctx context.Context, roomID, userID string, seq int64) error {
	return m.Invoke.Do(ctx, m.AppID, http.MethodPost, "/internal/v1/rooms/"+url.PathEscape(roomID)+"/read", nil,
		readRequest{UserID: userID, Seq: seq}, nil)
}

// Submit is POST events.SubmitRoute: the message service stores the
// batch in its next round and answers each submission's outcome.
func (m Messages) Submit(ctx context.Context, batch events.SubmissionBatch) (events.SubmitResult, error) {
	var out events.SubmitResult
	err := m.Invoke.Do(ctx, m.AppID, http.MethodPost, events.SubmitRoute, nil, batch, &out)
	return out, err
}

// Sessions calls the auth service's session check.
type Sessions struct {
	Invoke *invoke.Client
	AppID  string // "auth"
}

// Check is GET /internal/v1/sessions/{sid}: a 2xx answer means the session
// is live; 404, 401 and 403 mean it is gone, which the client sees as
// a 401 session_revoked.
func (s Sessions) Check(ctx context.Context, sessionID string) error {
	err := s.Invoke.Do(ctx, s.AppID, http.MethodGet, "/internal/v1/sessions/"+url.PathEscape(sessionID), nil, nil, nil)
	if err == nil {
		return nil
	}
	switch apierror.KindOf(err) {
	case apierror.NotFound, apierror.Unauthenticated, apierror.Forbidden:
		return apierror.New(apierror.Unauthenticated, "session_revoked", "the session has ended; log in again")
	}
	return err
}
