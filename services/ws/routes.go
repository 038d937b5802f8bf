package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/pubsub"
)

// routes is the whole HTTP API of a ws replica: GET /ws, served by the
// hub, and the probes; ready are the checks of /readyz.
//
// /ws stays outside the access log: its response writer must remain an
// http.Hijacker for the upgrade (the hub logs sockets itself). /ws is
// public: its guard is the user's access token, checked at the handshake
// (with the origin and the limits), so a client may reach it through the
// gateway's hand-off or relay, or straight from an ingress
// (docs/deploy.md). Every other route but the probes needs the app token
// (httpapi.ListenApp).
func routes(ws http.Handler, ready map[string]httpapi.Check, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpapi.Healthz())
	mux.Handle("GET /readyz", httpapi.Readyz(ready))
	handler := http.NewServeMux()
	handler.Handle("GET /ws", httpapi.RequestIDs(ws))
	handler.Handle("/", httpapi.RequestIDs(httpapi.AccessLog(log)(httpapi.Recover(log)(mux))))
	return handler
}

// subscribed is the readiness check of a streaming subscription.
func subscribed(s *pubsub.Stream) httpapi.Check {
	return func(context.Context) error {
		if !s.Active() {
			return fmt.Errorf("not subscribed to %s/%s", s.PubSub, s.Topic)
		}
		return nil
	}
}
