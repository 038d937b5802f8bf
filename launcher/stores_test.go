package launcher

import (
	"path/filepath"
	"reflect"
	"testing"
)

func appsNamed(names ...string) []*App {
	var apps []*App
	for _, n := range names {
		id := n
		if i := len(n) - 2; i > 0 && n[i] == '-' {
			id = n[:i]
		}
		apps = append(apps, &App{Name: n, AppID: id})
	}
	return apps
}

func waveNames(waves [][]*App) [][]string {
	var out [][]string
	for _, w := range waves {
		var names []string
		for _, a := range w {
			names = append(names, a.Name)
		}
		out = append(out, names)
	}
	return out
}

var stackApps = []string{"auth", "message", "presence", "notification-1", "notification-2", "ws-1", "ws-2", "gateway"}

// TestFirstWavesOfTheProfiles: on MySQL and PostgreSQL every store
// component shares one database, so one sidecar creates it alone first;
// on SQLite (files the launcher creates) and Redis nothing waits.
func TestFirstWavesOfTheProfiles(t *testing.T) {
	for _, tc := range []struct {
		profile string
		want    [][]string
	}{
		{"nats-mysql", [][]string{{"auth"}}},
		{"kafka-postgres", [][]string{{"auth"}}},
		{"rabbitmq-postgres", [][]string{{"auth"}}},
		{"local", nil},
		{"redis", nil},
	} {
		ids := []string{"auth", "message", "presence", "notification", "ws", "gateway"}
		stores, err := sharedStores(filepath.Join("..", "components", tc.profile), ids)
		if err != nil {
			t.Fatal(err)
		}
		got := waveNames(firstWaves(appsNamed(stackApps...), stores))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: first waves %v, want %v", tc.profile, got, tc.want)
		}
	}
}

// TestFirstWavesKeepSharersApart: an app that uses a store another app of
// the wave creates waits, and another user of its other store creates
// that one meanwhile.
func TestFirstWavesKeepSharersApart(t *testing.T) {
	stores := map[storeKey][]string{
		{"state.mysql", "a"}:      {"auth", "message"},
		{"state.postgresql", "b"}: {"message", "presence"},
		{"state.postgresql", "c"}: {"presence"},
	}
	got := waveNames(firstWaves(appsNamed("auth", "message", "presence"), stores))
	want := [][]string{{"auth", "presence"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("waves %v, want %v", got, want)
	}
}

// TestFailedComponentNamesTheComponentAndTheCause: the launcher's error
// for a sidecar that died at start leads with what daprd logged.
func TestFailedComponentNamesTheComponentAndTheCause(t *testing.T) {
	const want = "component presencestore (state.mysql/v1) failed to initialize: Error 1007 (HY000): Can't create database 'papo'; database exists"
	for _, lines := range [][]string{
		{
			`time="2026-12-07T10:00:00Z" level=info msg="Starting Dapr Runtime" app_id=presence`,
			`time="2026-12-07T10:00:01Z" level=error msg="Failed to init component presencestore (state.mysql/v1): [INIT_COMPONENT_FAILURE]: initialization error occurred for presencestore (state.mysql/v1): Error 1007 (HY000): Can't create database 'papo'; database exists" app_id=presence scope=dapr.runtime.processor type=log ver=1.14.0`,
		},
		{
			`time="2026-12-07T10:00:01Z" level=fatal msg="Fatal error from runtime: process component presencestore error: [INIT_COMPONENT_FAILURE]: initialization error occurred for presencestore (state.mysql/v1): Error 1007 (HY000): Can't create database 'papo'; database exists" app_id=presence`,
		},
	} {
		if got := failedComponent(lines); got != want {
			t.Errorf("failedComponent = %q, want %q", got, want)
		}
	}
	if got := failedComponent([]string{`level=fatal msg="listen tcp 127.0.0.1:1: bind: address already in use"`}); got != "" {
		t.Errorf("a failure that is no component's: %q, want none", got)
	}
}
