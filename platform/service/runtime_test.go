package service_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/papochat/papo/platform/service"
	"github.com/papochat/papo/platform/servicetest"
	"github.com/papochat/papo/platform/settings"
)

// TestStartBuildsTheRuntimeWithoutASidecar: Start connects to nothing
// (the sidecar is not up when a service starts), logs JSON naming the
// app, and Close releases what it built.
func TestStartBuildsTheRuntimeWithoutASidecar(t *testing.T) {
	t.Parallel()
	var base settings.Base
	ports := servicetest.FreePorts(t, 2)
	env := servicetest.Env(map[string]string{
		"APP_PORT": "0", "DAPR_HTTP_PORT": ports[0], "DAPR_GRPC_PORT": ports[1], "METRICS_ADDR": "",
	})
	if err := settings.Load(env, &base); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rt, err := service.Start(base, "svc", &out)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Log == nil || rt.Tel == nil || rt.Sidecar == nil || rt.Invoke == nil || rt.Publisher() == nil || rt.Probe == nil {
		t.Fatalf("runtime incomplete: %+v", rt)
	}
	if rt.Store("somestore") == nil {
		t.Fatal("no store")
	}
	rt.Log.Info("hello")
	if !strings.Contains(out.String(), `"app":"svc"`) {
		t.Fatalf("log %q does not name the app", out.String())
	}
	rt.Close()
}
