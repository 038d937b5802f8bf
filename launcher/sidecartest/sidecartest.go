// Package sidecartest starts a real daprd sidecar without an app for tests
// that exercise Dapr components directly: the state store contract suite
// against SQLite, Redis, PostgreSQL and MySQL, pub/sub brokers, bindings.
package sidecartest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/launcher"
	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/procs"
	"github.com/papochat/papo/platform/sidecar"
)

// Sidecar is a running daprd.
type Sidecar struct {
	AppID    string
	HTTPPort int
	GRPCPort int
	Client   dapr.Client
}

// Options configure a test sidecar.
type Options struct {
	AppID string
	// Components maps file names to component YAML.
	Components map[string]string
	// AppPort, when set, is an app the sidecar talks to (subscriptions,
	// invocation); empty runs the sidecar alone.
	AppPort string
}

// Start starts daprd with opts and stops it when the test ends. It fails
// the test if daprd does not become ready within 60 s.
func Start(t testing.TB, opts Options) *Sidecar {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := launcher.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	path, err := daprd.Locate(ctx, root, testWriter{t})
	if err != nil {
		t.Fatalf("daprd: %v", err)
	}
	dir := t.TempDir()
	res := filepath.Join(dir, "components")
	if err := os.MkdirAll(res, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, y := range opts.Components {
		if err := os.WriteFile(filepath.Join(res, name), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := launcher.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	appID := opts.AppID
	if appID == "" {
		appID = "sidecartest"
	}
	sc := daprd.Sidecar{
		AppID: appID, AppPort: opts.AppPort,
		HTTPPort: ports[0], GRPCPort: ports[1], InternalPort: ports[2], MetricsPort: ports[3], PublicPort: ports[4],
		ResourcesDir: res, LogLevel: "warn",
	}
	// daprd's log is shown only when the test fails: its warnings and
	// expected errors (every refused ETag is logged) would bury the output.
	proc, err := procs.Start(procs.Spec{Name: appID + ".dapr", Path: path, Args: sc.Args(), Dir: dir, Env: sc.Env()},
		io.Discard, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("daprd %s log (last lines):\n%s", appID, strings.Join(proc.Tail(), "\n"))
		}
	})
	probe := sidecar.NewProbe(fmt.Sprint(ports[0]))
	readyCtx, cancelReady := context.WithTimeout(ctx, 60*time.Second)
	defer cancelReady()
	for probe.Check(readyCtx) != nil {
		if proc.Exited() {
			t.Fatalf("daprd exited: %v\n%s", proc.Err(), strings.Join(proc.Tail(), "\n"))
		}
		select {
		case <-readyCtx.Done():
			t.Fatalf("daprd not ready within 60 s:\n%s", strings.Join(proc.Tail(), "\n"))
		case <-time.After(100 * time.Millisecond):
		}
	}
	client, err := sidecar.Client(fmt.Sprint(ports[1]), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return &Sidecar{AppID: appID, HTTPPort: ports[0], GRPCPort: ports[1], Client: client}
}

// RequireInfra reports whether tests must fail, not skip, when a server
// they need is missing (CI sets PAPO_REQUIRE_INFRA=1).
func RequireInfra() bool { return os.Getenv("PAPO_REQUIRE_INFRA") == "1" }

// NeedTCP skips the test (or fails it under PAPO_REQUIRE_INFRA=1) when
// nothing answers at addr.
func NeedTCP(t testing.TB, what, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	if RequireInfra() {
		t.Fatalf("%s is required (PAPO_REQUIRE_INFRA=1) but %s does not answer: %v", what, addr, err)
	}
	t.Skipf("%s not available at %s (%v); set PAPO_REQUIRE_INFRA=1 to make this a failure", what, addr, err)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
