// Package server is the message service's HTTP edge: the public
// /api/v1/rooms* and /api/v1/dms routes (bearer tokens), the internal
// /internal/v1 routes other services call through Dapr, health, and the
// Dapr subscription to messages.submitted. Handlers decode, authorize, call
// package room and encode; nothing else.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dapr/go-sdk/service/common"
	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/telemetry"

	"github.com/papochat/papo/services/message/internal/room"
)

// SubmittedRoute is where the sidecar delivers messages.submitted.
const SubmittedRoute = "/events/submitted"

// Deps are what the routes need.
type Deps struct {
	Rooms    *room.Service
	Verifier authn.TokenVerifier
	// Users checks that a user named in an added member or a DM exists;
	// nil skips the check.
	Users Users
	Log   *slog.Logger
	// Ready are the checks behind /readyz.
	Ready map[string]httpapi.Check
	// Traces, when set, continues callers' traces in a span per request.
	Traces trace.TracerProvider
}

// Routes returns the service's router. The Dapr SDK's service adds its own
// routes (/dapr/subscribe) to the same router.
func Routes(d Deps) *chi.Mux {
	h := handlers{rooms: d.Rooms, users: d.Users, log: d.Log}
	handle := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(d.Log, f) }

	r := chi.NewRouter()
	r.Use(httpapi.Recover(d.Log), httpapi.RequestIDs, httpapi.AccessLog(d.Log))
	if d.Traces != nil {
		r.Use(telemetry.HTTP(d.Traces, func(r *http.Request) string { return chi.RouteContext(r.Context()).RoutePattern() }))
	}
	r.NotFound(httpapi.NotFound)
	r.MethodNotAllowed(httpapi.MethodNotAllowed)
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", httpapi.Readyz(d.Ready))

	r.Route("/api/v1", func(r chi.Router) {
		r.Use(authn.Middleware(d.Verifier, func(w http.ResponseWriter, r *http.Request, err error) {
			httpapi.Error(w, r, d.Log, err)
		}))
		r.Method(http.MethodPost, "/rooms", handle(h.createRoom))
		r.Method(http.MethodGet, "/rooms", handle(h.myRooms))
		r.Method(http.MethodGet, "/rooms/public", handle(h.publicRooms))
		r.Method(http.MethodGet, "/rooms/invitations", handle(h.invitations))
		r.Method(http.MethodPost, "/rooms/{id}/join", handle(h.join))
		r.Method(http.MethodPost, "/rooms/{id}/decline", handle(h.decline))
		r.Method(http.MethodPost, "/rooms/{id}/leave", handle(h.leave))
		r.Method(http.MethodPost, "/rooms/{id}/members", handle(h.addMember))
		r.Method(http.MethodGet, "/rooms/{id}/members", handle(h.members))
		r.Method(http.MethodGet, "/rooms/{id}/events", handle(h.history))
		r.Method(http.MethodPost, "/rooms/{id}/messages", handle(h.send))
		r.Method(http.MethodPost, "/rooms/{id}/read", handle(h.read))
		r.Method(http.MethodPost, "/dms", handle(h.openDM))
	})

	// Internal routes carry no user token: ws calls them through its
	// sidecar on behalf of users it has authenticated. The gateway never
	// routes /internal, and Dapr access control limits who may call.
	r.Route("/internal/v1", func(r chi.Router) {
		r.Method(http.MethodGet, "/users/{uid}/rooms", handle(h.internalCursors))
		r.Method(http.MethodGet, "/rooms/{id}/events", handle(h.internalHistory))
		r.Method(http.MethodGet, "/rooms/{id}/members", handle(h.internalMembers))
		r.Method(http.MethodPost, "/rooms/{id}/read", handle(h.internalRead))
		r.Method(http.MethodPost, strings.TrimPrefix(events.SubmitRoute, "/internal/v1"), handle(h.internalSubmit))
	})
	return r
}

// Subscribe registers the consumer of messages.submitted on a Dapr service
// (competing consumers: component events.PubSub).
func Subscribe(svc common.Service, rooms *room.Service, log *slog.Logger) error {
	sub := &common.Subscription{PubsubName: events.PubSub, Topic: events.TopicSubmitted, Route: SubmittedRoute}
	return svc.AddTopicEventHandler(sub, SubmittedHandler(rooms, log))
}

// SubmittedHandler consumes one messages.submitted delivery. It asks for a
// retry only for transient errors; a payload that is not a SubmissionBatch
// is dead-lettered and acknowledged, since redelivering it cannot help.
func SubmittedHandler(rooms *room.Service, log *slog.Logger) common.TopicEventHandler {
	return func(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
		batch, err := decodeBatch(e.RawData)
		if err != nil {
			log.WarnContext(ctx, "malformed submission batch", "event_id", e.ID, "err", err)
			if err := rooms.DeadLetterRaw(ctx, e.RawData, err); err != nil {
				return true, err
			}
			return false, nil
		}
		if err := rooms.Consume(ctx, batch); err != nil {
			log.WarnContext(ctx, "submission batch will be redelivered", "event_id", e.ID, "err", err)
			return true, err
		}
		return false, nil
	}
}

// decodeBatch decodes a SubmissionBatch, also when a publisher sent it as
// text (Dapr then carries the JSON as a JSON string).
func decodeBatch(raw []byte) (events.SubmissionBatch, error) {
	var batch events.SubmissionBatch
	err := json.Unmarshal(raw, &batch)
	if err != nil {
		var text string
		if json.Unmarshal(raw, &text) == nil {
			err = json.Unmarshal([]byte(text), &batch)
		}
	}
	if err == nil && len(batch.Submissions) == 0 {
		err = errors.New("batch holds no submissions")
	}
	return batch, err
}

type handlers struct {
	rooms *room.Service
	users Users
	log   *slog.Logger
}

// checkUser refuses a user id the auth service does not know (an empty
// one is left to the room rules, which refuse it).
func (h handlers) checkUser(ctx context.Context, userID string) error {
	if h.users == nil || userID == "" {
		return nil
	}
	// A malformed id is the client's mistake (400), checked before it goes
	// anywhere: in the path of the call to auth, a control character
	// would be refused on the way and read as auth being unavailable.
	if err := validate.UserID(userID); err != nil {
		return err
	}
	return h.users.Check(ctx, userID)
}

// user returns the authenticated caller; the middleware guarantees one.
func user(r *http.Request) string {
	c, _ := authn.FromContext(r.Context())
	return c.UserID
}

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
