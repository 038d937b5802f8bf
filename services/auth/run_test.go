package main

import (
	"net/http"
	"testing"

	"github.com/papochat/papo/platform/servicetest"
)

// TestRunServesHealthBeforeTheSidecarAndStops runs the real main path with
// no sidecar: /healthz answers, /readyz says not ready (no sidecar, no
// signing key), and cancelling the context stops run cleanly.
func TestRunServesHealthBeforeTheSidecarAndStops(t *testing.T) {
	t.Parallel()
	base, stop := servicetest.Start(t, run, nil)
	if got := servicetest.Status(t, http.MethodGet, base+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", got)
	}
	// A wrong method is 405, not a 404.
	if got := servicetest.StatusWith(t, http.MethodPost, base+"/api/v1/auth/jwks", servicetest.WithAppToken()); got != http.StatusMethodNotAllowed {
		t.Fatalf("POST jwks = %d, want 405", got)
	}
	// Only its sidecar reaches auth: every route but the probes needs the
	// app API token.
	for _, route := range []struct{ method, path string }{
		{"GET", "/internal/v1/sessions/s1"}, {"GET", "/internal/v1/users/u1"}, {"GET", "/internal/v1/revocations"},
		{"POST", "/api/v1/auth/login"}, {"GET", "/api/v1/auth/jwks"},
	} {
		servicetest.RequireAppToken(t, base, route.method, route.path)
	}
	stop()
}
