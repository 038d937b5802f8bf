package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/httpapi"
)

// Tracker is what the handlers need of the presence state machine;
// *tracker.Tracker implements it.
type Tracker interface {
	Connect(ctx context.Context, replica, uid string) error
	Disconnect(ctx context.Context, replica, uid string) error
	Heartbeat(ctx context.Context, replica string, users map[string]int) error
	Presence(ctx context.Context, uids []string) ([]api.Presence, error)
}

// Limits of the API, each with a test.
const (
	// MaxQueryUsers bounds user_ids in one GET /api/v1/presence.
	MaxQueryUsers = 100
	// MaxHeartbeatUsers bounds the users in one heartbeat: a replica with
	// more must be split over more replicas (one heartbeat is a snapshot).
	MaxHeartbeatUsers = 100_000
	// maxHeartbeatBody fits MaxHeartbeatUsers ids of typical length and
	// stays under Dapr's default 4 MB invocation body limit.
	maxHeartbeatBody = 4 << 20
	maxSmallBody     = 4 << 10
)

var (
	validReplica = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	validConnID  = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// Deps are the presence service's dependencies.
type Deps struct {
	Tracker  Tracker
	Verifier authn.TokenVerifier
	Log      *slog.Logger
	Ready    map[string]httpapi.Check
}

// NewServer returns the presence service's handler. This file lists its
// whole surface: the public query, the internal routes ws calls through
// Dapr (docs/presence.md), and health.
func NewServer(d Deps) http.Handler {
	writeErr := func(w http.ResponseWriter, r *http.Request, err error) { httpapi.Error(w, r, d.Log, err) }
	handle := func(h httpapi.HandlerFunc) http.Handler { return httpapi.Handle(d.Log, h) }

	r := chi.NewRouter()
	r.Use(httpapi.RequestIDs, httpapi.AccessLog(d.Log), httpapi.Recover(d.Log))
	r.Method(http.MethodGet, "/healthz", httpapi.Healthz())
	r.Method(http.MethodGet, "/readyz", httpapi.Readyz(d.Ready))

	r.Group(func(r chi.Router) {
		r.Use(authn.Middleware(d.Verifier, writeErr))
		r.Method(http.MethodGet, "/api/v1/presence", handle(handleQuery(d.Tracker)))
	})
	// Internal routes carry no user token: ws calls them through its
	// sidecar for connections it has authenticated. The gateway never
	// routes /internal.
	r.Route("/internal/v1/presence", func(r chi.Router) {
		// The same query for services acting on no user's behalf (the
		// notification service skips pushes to online users).
		r.Method(http.MethodGet, "/", handle(handleQuery(d.Tracker)))
		r.Method(http.MethodPost, "/connect", handle(handleConnChange(d.Tracker.Connect)))
		r.Method(http.MethodPost, "/disconnect", handle(handleConnChange(d.Tracker.Disconnect)))
		r.Method(http.MethodPost, "/heartbeat", handle(handleHeartbeat(d.Tracker)))
	})
	r.NotFound(httpapi.NotFound)
	r.MethodNotAllowed(httpapi.MethodNotAllowed)
	return r
}

// handleQuery answers GET /api/v1/presence?user_ids=a,b for any
// authenticated caller (see docs/presence.md for why not only room peers).
func handleQuery(t Tracker) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		uids, err := parseUserIDs(r.URL.Query()["user_ids"])
		if err != nil {
			return err
		}
		presence, err := t.Presence(r.Context(), uids)
		if err != nil {
			return err
		}
		httpapi.Encode(w, http.StatusOK, api.PresenceResponse{Presence: presence})
		return nil
	}
}

// checkListedUserID checks one id of a list (api/validate's rule), naming
// it in the error.
func checkListedUserID(id string) error {
	var v *validate.Error
	if errors.As(validate.UserID(id), &v) {
		return apierror.Invalidf(v.Code, "user id %.40q: %s", id, v.Message)
	}
	return nil
}

// parseUserIDs reads user_ids (comma-separated, repeatable), dropping
// duplicates and keeping the first order.
func parseUserIDs(values []string) ([]string, error) {
	var uids []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, id := range strings.Split(v, ",") {
			id = strings.TrimSpace(id)
			if id == "" || seen[id] {
				continue
			}
			if err := checkListedUserID(id); err != nil {
				return nil, err
			}
			seen[id] = true
			uids = append(uids, id)
			if len(uids) > MaxQueryUsers {
				return nil, apierror.Invalidf("too_many_user_ids", "at most %d user_ids per request", MaxQueryUsers)
			}
		}
	}
	if len(uids) == 0 {
		return nil, apierror.Invalidf("invalid_user_ids", "user_ids is required: a comma-separated list of user ids")
	}
	return uids, nil
}

// ConnRequest is the body of POST /internal/v1/presence/connect and
// /disconnect.
type ConnRequest struct {
	Replica string `json:"replica"`
	UserID  string `json:"user_id"`
	ConnID  string `json:"conn_id"`
}

func (c ConnRequest) validate() error {
	if !validReplica.MatchString(c.Replica) {
		return apierror.Invalidf("invalid_replica", "replica must match %s", validReplica)
	}
	if err := validate.UserID(c.UserID); err != nil {
		return err
	}
	if !validConnID.MatchString(c.ConnID) {
		return apierror.Invalidf("invalid_conn_id", "conn_id must be 1 to 128 printable characters")
	}
	return nil
}

// handleConnChange answers connect and disconnect: both take a
// ConnRequest and apply one tracker change.
func handleConnChange(change func(ctx context.Context, replica, userID string) error) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req ConnRequest
		if err := httpapi.Decode(w, r, maxSmallBody, &req); err != nil {
			return err
		}
		if err := req.validate(); err != nil {
			return err
		}
		if err := change(r.Context(), req.Replica, req.UserID); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// HeartbeatRequest is the body of POST /internal/v1/presence/heartbeat:
// the replica's whole live set, user id → open connections.
type HeartbeatRequest struct {
	Replica string         `json:"replica"`
	Users   map[string]int `json:"users"`
}

func handleHeartbeat(t Tracker) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req HeartbeatRequest
		if err := httpapi.Decode(w, r, maxHeartbeatBody, &req); err != nil {
			return err
		}
		if !validReplica.MatchString(req.Replica) {
			return apierror.Invalidf("invalid_replica", "replica must match %s", validReplica)
		}
		if len(req.Users) > MaxHeartbeatUsers {
			return apierror.Invalidf("too_many_users", "at most %d users per heartbeat", MaxHeartbeatUsers)
		}
		for uid, n := range req.Users {
			if err := checkListedUserID(uid); err != nil {
				return err
			}
			if n < 0 {
				return apierror.Invalidf("invalid_count", "connection count of %s is negative", uid)
			}
		}
		if err := t.Heartbeat(r.Context(), req.Replica, req.Users); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
