package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/dapr/components-contrib/nameresolution"
	nrsqlite "github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/kit/logger"
)

// startResolver registers appID at 127.0.0.1:port in the SQLite database
// db through the caching resolver (upstream's registration underneath),
// with the launcher's settings, and returns it with its clock set to now.
func startResolver(t *testing.T, db, appID string, port int, now *time.Time) *cachingResolver {
	t.Helper()
	r := newCachingResolver(nrsqlite.NewResolver, time.Second)(logger.NewLogger("test")).(*cachingResolver)
	r.now = func() time.Time { return *now }
	err := r.Init(context.Background(), nameresolution.Metadata{
		Instance: nameresolution.Instance{AppID: appID, Address: "127.0.0.1", DaprInternalPort: port},
		Configuration: map[string]any{
			"connectionString": db,
			"updateInterval":   "15s",
			"timeout":          "10s",
		},
	})
	if err != nil {
		t.Fatalf("init the resolver of %s: %v", appID, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func resolve(t *testing.T, r nameresolution.Resolver, appID string) string {
	t.Helper()
	addr, err := r.ResolveID(context.Background(), nameresolution.ResolveRequest{ID: appID})
	if err != nil {
		t.Fatalf("resolve %s: %v", appID, err)
	}
	return addr
}

// TestCachingResolverFollowsARestart: an answer is reused for the TTL (no
// query per call), and once it has expired a restarted app is found at
// its new port.
func TestCachingResolverFollowsARestart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nr.db")
	now := time.Now()
	caller := startResolver(t, db, "caller", 40000, &now)
	app := startResolver(t, db, "app", 40001, &now)
	if got := resolve(t, caller, "app"); got != "127.0.0.1:40001" {
		t.Fatalf("app resolved to %s, want 127.0.0.1:40001", got)
	}
	// The app restarts at another port: the old row goes, a new one comes.
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	startResolver(t, db, "app", 40002, &now)
	if got := resolve(t, caller, "app"); got != "127.0.0.1:40001" {
		t.Fatalf("within the TTL the app resolved to %s, want the cached 127.0.0.1:40001", got)
	}
	now = now.Add(time.Second)
	if got := resolve(t, caller, "app"); got != "127.0.0.1:40002" {
		t.Fatalf("after the TTL the app resolved to %s, want its new address 127.0.0.1:40002", got)
	}
}

// TestCachingResolverDoesNotCacheAFailure: an app-id with no live
// sidecar is an error, and the app is found as soon as it registers, even
// within the TTL of the failed lookup.
func TestCachingResolverDoesNotCacheAFailure(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nr.db")
	now := time.Now()
	caller := startResolver(t, db, "caller", 40010, &now)
	if _, err := caller.ResolveID(context.Background(), nameresolution.ResolveRequest{ID: "late"}); !errors.Is(err, errNoHost) {
		t.Fatalf("resolving an unregistered app: %v, want errNoHost", err)
	}
	startResolver(t, db, "late", 40011, &now)
	if got := resolve(t, caller, "late"); got != "127.0.0.1:40011" {
		t.Fatalf("late resolved to %s, want 127.0.0.1:40011", got)
	}
	// A cached entry whose refresh fails is dropped too.
	now = now.Add(time.Second)
	caller.query = "SELECT address FROM no_such_table WHERE app_id = ?"
	if _, err := caller.ResolveID(context.Background(), nameresolution.ResolveRequest{ID: "late"}); err == nil {
		t.Fatal("a failed lookup returned no error")
	}
	if _, ok := caller.cache["late"]; ok {
		t.Fatal("the cached entry survived a failed lookup")
	}
}

// TestCachingResolverSpreadsOverReplicas: two sidecars of one app-id both
// get calls from one cached answer, as upstream's random pick gives them.
func TestCachingResolverSpreadsOverReplicas(t *testing.T) {
	db := filepath.Join(t.TempDir(), "nr.db")
	now := time.Now()
	caller := startResolver(t, db, "caller", 40020, &now)
	startResolver(t, db, "app", 40021, &now)
	startResolver(t, db, "app", 40022, &now)
	seen := map[string]int{}
	for range 200 {
		seen[resolve(t, caller, "app")]++
	}
	if len(seen) != 2 || seen["127.0.0.1:40021"] < 40 || seen["127.0.0.1:40022"] < 40 {
		t.Fatalf("200 calls went to %v, want both replicas", seen)
	}
}

// The cache wraps a resolver that upstream closes through io.Closer.
var _ io.Closer = (*cachingResolver)(nil)
