package telemetry_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/papochat/papo/platform/telemetry"
)

// TestStatusRecorderKeepsTheFirstStatus: the first status written is the
// response's; a body written first means 200; the writer below stays
// reachable through http.ResponseController.
func TestStatusRecorderKeepsTheFirstStatus(t *testing.T) {
	t.Parallel()
	rec := &telemetry.StatusRecorder{ResponseWriter: httptest.NewRecorder()}
	if rec.Status != 0 {
		t.Fatalf("status %d before anything is written", rec.Status)
	}
	rec.WriteHeader(http.StatusTeapot)
	rec.WriteHeader(http.StatusInternalServerError)
	if rec.Status != http.StatusTeapot {
		t.Fatalf("status %d, want the first one written", rec.Status)
	}
	rec = &telemetry.StatusRecorder{ResponseWriter: httptest.NewRecorder()}
	if _, err := rec.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if rec.Status != http.StatusOK {
		t.Fatalf("status %d after a body, want 200", rec.Status)
	}
	// httptest.ResponseRecorder flushes but has no deadlines: the
	// controller reaches it through Unwrap.
	rc := http.NewResponseController(rec)
	if err := rc.Flush(); err != nil {
		t.Fatalf("flush through the recorder: %v", err)
	}
	if err := rc.SetWriteDeadline(time.Now()); err == nil {
		t.Fatal("a deadline on a writer that has none accepted")
	}
}
