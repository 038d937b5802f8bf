package server

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
)

// CursorsResponse answers GET /internal/v1/users/{uid}/rooms.
type CursorsResponse struct {
	Rooms []api.RoomCursor `json:"rooms"`
}

func (h handlers) internalCursors(w http.ResponseWriter, r *http.Request) error {
	rooms, err := h.rooms.Cursors(r.Context(), chi.URLParam(r, "uid"))
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, CursorsResponse{Rooms: rooms})
	return nil
}

func (h handlers) internalHistory(w http.ResponseWriter, r *http.Request) error {
	return h.page(w, r, "")
}

// InternalMembersResponse answers GET /internal/v1/rooms/{id}/members:
// the members and the room itself (the notification service names the
// room in its pushes and treats DMs as mentions).
type InternalMembersResponse struct {
	Members []string  `json:"members"`
	Room    *api.Room `json:"room,omitempty"`
}

func (h handlers) internalMembers(w http.ResponseWriter, r *http.Request) error {
	ids, err := h.rooms.Members(r.Context(), "", chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	room, err := h.rooms.Room(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	room.Members = nil
	httpapi.Encode(w, http.StatusOK, InternalMembersResponse{Members: ids, Room: &room})
	return nil
}

// Limits of one POST events.SubmitRoute: submissions per call, and the
// body (each submission's text is at most api.MaxTextRunes characters, up
// to 4 bytes each).
const (
	maxSubmitBatch = 1024
	maxSubmitBody  = 16 << 20
)

// internalSubmit stores a batch ws hands over and answers each
// submission's outcome (see room.Service.Append). A transient failure is
// 503: the caller repeats the call, and what was stored is answered with
// its seq.
func (h handlers) internalSubmit(w http.ResponseWriter, r *http.Request) error {
	var batch events.SubmissionBatch
	if err := httpapi.Decode(w, r, maxSubmitBody, &batch); err != nil {
		return err
	}
	if len(batch.Submissions) > maxSubmitBatch {
		return apierror.Invalidf("batch_too_large", "at most %d submissions per call", maxSubmitBatch)
	}
	outcomes, err := h.rooms.Append(r.Context(), batch.Submissions)
	if err != nil {
		if _, ok := apierror.As(err); !ok {
			h.log.WarnContext(r.Context(), "submissions not stored", "count", len(batch.Submissions), "err", err)
			err = apierror.New(apierror.Unavailable, "unavailable", "the submissions could not be stored; retry")
		}
		return err
	}
	if outcomes == nil {
		outcomes = []events.Outcome{}
	}
	httpapi.Encode(w, http.StatusOK, events.SubmitResult{Outcomes: outcomes})
	return nil
}

// InternalReadRequest is the body of POST /internal/v1/rooms/{id}/read.
type InternalReadRequest struct {
	UserID string `json:"user_id"`
	Seq    int64  `json:"seq"`
}

func (h handlers) internalRead(w http.ResponseWriter, r *http.Request) error {
	var req InternalReadRequest
	if err := httpapi.Decode(w, r, 0, &req); err != nil {
		return err
	}
	if req.UserID == "" {
		return apierror.Invalidf("invalid_user_id", "user_id is required")
	}
	if err := h.rooms.MarkRead(r.Context(), req.UserID, chi.URLParam(r, "id"), req.Seq); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
