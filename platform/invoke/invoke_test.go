package invoke_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/httpapi"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/telemetry"
)

// sidecar stands in for daprd's invoke API: it answers per path.
func sidecar(t *testing.T, h http.HandlerFunc) *invoke.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return invoke.New(u.Port(), testToken)
}

const testToken = "0123456789abcdef0123456789abcdef"

func TestDoCallsThroughTheInvokeAPIAndDecodes(t *testing.T) {
	var gotPath, gotReqID, gotToken string
	c := sidecar(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotReqID, gotToken = r.URL.Path, r.Header.Get(httpapi.RequestIDHeader), r.Header.Get("dapr-api-token")
		httpapi.Encode(w, 200, map[string]string{"hello": "world"})
	})
	var out map[string]string
	ctx := httpapi.WithRequestID(context.Background(), "req-1")
	if err := c.Do(ctx, "message", http.MethodGet, "/internal/v1/x", nil, nil, &out); err != nil {
		t.Fatal(err)
	}
	if gotPath != "/v1.0/invoke/message/method/internal/v1/x" || gotReqID != "req-1" || out["hello"] != "world" {
		t.Fatalf("path %q, request id %q, out %v", gotPath, gotReqID, out)
	}
	if gotToken != testToken {
		t.Fatalf("the sidecar got Dapr API token %q, want %q", gotToken, testToken)
	}
}

func TestDoReturnsTheCalleesErrorUnchanged(t *testing.T) {
	c := sidecar(t, func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, r, nil, apierror.New(apierror.Forbidden, "not_a_member", "you are not in this room"))
	})
	err := c.Do(context.Background(), "message", http.MethodGet, "/x", nil, nil, nil)
	e, ok := apierror.As(err)
	if !ok || e.Kind != apierror.Forbidden || e.Code != "not_a_member" {
		t.Fatalf("got %v, want the callee's 403 not_a_member", err)
	}
}

func TestDoMapsAnUnreachableCalleeToUnavailable(t *testing.T) {
	c := sidecar(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	err := c.Do(context.Background(), "auth", http.MethodGet, "/x", nil, nil, nil)
	if apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	dead := invoke.New("1", testToken) // nothing listens on port 1
	err = dead.Do(context.Background(), "auth", http.MethodGet, "/x", nil, nil, nil)
	if apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("no sidecar: got %v, want Unavailable", err)
	}
	// The message reaches clients: it must not name the sidecar.
	for _, leak := range []string{"127.0.0.1", ":1", "http://", "v1.0"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the error %q names the sidecar (%q)", err, leak)
		}
	}
}

func TestDoCarriesTheCallersTraceContext(t *testing.T) {
	const tp = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"inside a trace", telemetry.WithTraceParent(context.Background(), tp), tp},
		{"outside any", context.Background(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			c := sidecar(t, func(w http.ResponseWriter, r *http.Request) {
				got = r.Header.Get("traceparent")
				httpapi.Encode(w, 200, map[string]string{})
			})
			if err := c.Do(tc.ctx, "message", http.MethodGet, "/x", nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("traceparent %q, want %q", got, tc.want)
			}
		})
	}
}
