// Package server is the message service's HTTP edge: the public
// /api/v1/rooms* and /api/v1/dms routes (bearer tokens), the internal
// /internal/v1 routes other services call through Dapr, health, and the
// Dapr subscription to messages.submitted. Handlers decode, authorize, call
// package room and encode; nothing else.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/papochat/papo/api/validate"
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

// Routes returns the service's router. pubsub.Mount adds the delivery
// route of Submitted and /dapr/subscribe to it.
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
