package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"slices"
)

// AppTokenHeader carries the app API token: daprd sets it on every call
// it makes to its app (service invocation, pub/sub deliveries,
// /dapr/subscribe) when it runs with APP_API_TOKEN.
const AppTokenHeader = "dapr-api-token"

// RequireAppToken lets a request through only when it carries token in
// AppTokenHeader, so an app's routes answer its own sidecar (and the
// gateway's WebSocket proxy, which holds the same secret) and no one else
// who reaches its port. GET and HEAD of /healthz and /readyz stay open
// for probes. Anything else is answered 401 app_token_required with
// papo's error body. The header is removed before next runs, so no
// handler can log or forward it.
//
// The compare runs in constant time over SHA-256 digests, so neither the
// token nor its length leaks through timing. An empty token refuses every
// request but the probes: a service misconfigured that way stays closed.
//
// public lists further paths that anyone may GET: endpoints whose own
// guard is something else (ws's /ws checks the user's access token at the
// handshake).
func RequireAppToken(token string, log *slog.Logger, next http.Handler, public ...string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isProbe(r) || (r.Method == http.MethodGet && slices.Contains(public, r.URL.Path)) {
			next.ServeHTTP(w, r)
			return
		}
		got := r.Header.Get(AppTokenHeader)
		sum := sha256.Sum256([]byte(got))
		if token == "" || got == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			log.WarnContext(r.Context(), "call without the app API token refused",
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "token_sent", got != "")
			Encode(w, http.StatusUnauthorized, ErrorBody{Error: ErrorDetail{
				Code: "app_token_required", Message: "this is an internal endpoint: only the app's Dapr sidecar may call it"}})
			return
		}
		r.Header.Del(AppTokenHeader)
		next.ServeHTTP(w, r)
	})
}

// isProbe reports whether r is a health probe, which needs no token: the
// kubelet and the launcher call these without one.
func isProbe(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/healthz" || r.URL.Path == "/readyz"
}
