package server

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/services/message/internal/room"
)

func (h handlers) createRoom(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateRoomRequest
	if err := httpapi.Decode(w, r, 0, &req); err != nil {
		return err
	}
	room, err := h.rooms.CreateOnce(r.Context(), user(r), req.Name, req.Kind, req.ClientID)
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusCreated, api.RoomResponse{Room: room})
	return nil
}

func (h handlers) myRooms(w http.ResponseWriter, r *http.Request) error {
	rooms, err := h.rooms.Mine(r.Context(), user(r))
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, api.RoomsResponse{Rooms: rooms})
	return nil
}

func (h handlers) publicRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := room.DefaultPublicLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > room.MaxPublicLimit {
			return apierror.Invalidf("invalid_limit", "limit must be an integer from 1 to %d", room.MaxPublicLimit)
		}
		limit = n
	}
	page, err := h.rooms.Public(r.Context(), q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, api.RoomsResponse{Rooms: page.Rooms, NextCursor: page.Next})
	return nil
}

func (h handlers) invitations(w http.ResponseWriter, r *http.Request) error {
	invs, err := h.rooms.Invitations(r.Context(), user(r))
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, api.InvitationsResponse{Invitations: invs})
	return nil
}

func (h handlers) decline(w http.ResponseWriter, r *http.Request) error {
	if err := h.rooms.Decline(r.Context(), user(r), chi.URLParam(r, "id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h handlers) join(w http.ResponseWriter, r *http.Request) error {
	room, err := h.rooms.Join(r.Context(), user(r), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, api.RoomResponse{Room: room})
	return nil
}

func (h handlers) leave(w http.ResponseWriter, r *http.Request) error {
	if err := h.rooms.Leave(r.Context(), user(r), chi.URLParam(r, "id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h handlers) addMember(w http.ResponseWriter, r *http.Request) error {
	var req api.AddMemberRequest
	if err := httpapi.Decode(w, r, 0, &req); err != nil {
		return err
	}
	if err := h.checkUser(r.Context(), req.UserID); err != nil {
		return err
	}
	room, inv, err := h.rooms.AddMember(r.Context(), user(r), chi.URLParam(r, "id"), req.UserID)
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, api.AddMemberResponse{Room: room, Invitation: inv})
	return nil
}

// MembersResponse answers the members routes.
type MembersResponse struct {
	Members []string `json:"members"`
}

func (h handlers) members(w http.ResponseWriter, r *http.Request) error {
	ids, err := h.rooms.Members(r.Context(), user(r), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, MembersResponse{Members: ids})
	return nil
}

func (h handlers) openDM(w http.ResponseWriter, r *http.Request) error {
	var req api.DMRequest
	if err := httpapi.Decode(w, r, 0, &req); err != nil {
		return err
	}
	if err := h.checkUser(r.Context(), req.UserID); err != nil {
		return err
	}
	open := h.rooms.OpenDM
	if req.Encrypted {
		open = h.rooms.OpenEncryptedDM
	}
	room, err := open(r.Context(), user(r), req.UserID)
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, api.RoomResponse{Room: room})
	return nil
}

func (h handlers) history(w http.ResponseWriter, r *http.Request) error {
	return h.page(w, r, user(r))
}

func (h handlers) page(w http.ResponseWriter, r *http.Request, asUser string) error {
	p, err := parsePage(r.URL.Query())
	if err != nil {
		return err
	}
	resp, err := h.rooms.History(r.Context(), asUser, chi.URLParam(r, "id"), p)
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusOK, resp)
	return nil
}

// parsePage reads after, before and limit from a history query.
func parsePage(q url.Values) (room.Page, error) {
	p := room.Page{Limit: api.DefaultLimit}
	seq := func(name string) (int64, bool, error) {
		v := q.Get(name)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, false, apierror.Invalidf("invalid_seq", "%s must be a non-negative integer", name)
		}
		return n, true, nil
	}
	var err error
	if p.After, p.HasAfter, err = seq("after"); err != nil {
		return p, err
	}
	if p.Before, p.HasBefore, err = seq("before"); err != nil {
		return p, err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxPageLimit {
			return p, apierror.Invalidf("invalid_limit", "limit must be an integer from 1 to %d", api.MaxPageLimit)
		}
		p.Limit = n
	}
	return p, nil
}

func (h handlers) send(w http.ResponseWriter, r *http.Request) error {
	var req api.SendRequest
	if err := httpapi.Decode(w, r, 0, &req); err != nil {
		return err
	}
	roomID := chi.URLParam(r, "id")
	seq, err := h.rooms.Submit(r.Context(), events.Submission{
		Type: api.EventMessage, RoomID: roomID, SenderID: user(r), ClientID: req.ClientID, Text: req.Text,
		E2EE: req.E2EE, SentAt: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	httpapi.Encode(w, http.StatusAccepted, api.SendResponse{RoomID: roomID, ClientID: req.ClientID, Seq: seq})
	return nil
}

func (h handlers) read(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Seq *int64 `json:"seq"`
	}
	if err := httpapi.Decode(w, r, 0, &req); err != nil {
		return err
	}
	if req.Seq == nil {
		// A body without it (null, {}, a typo in the name) would move
		// nothing and answer 204, hiding the client's mistake.
		return apierror.Invalidf("invalid_seq", "seq is required")
	}
	if err := h.rooms.MarkRead(r.Context(), user(r), chi.URLParam(r, "id"), *req.Seq); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
