package launcher

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Stores that create what they need at start race when several sidecars
// start on one at once: Dapr 1.14's state.mysql checks for its database
// and then creates it, so two sidecars can both try and the loser exits
// ("Error 1007: Can't create database"); state.postgresql creates its
// shared metadata table with three quick retries. The launcher therefore
// starts, for every such store, one sidecar first and waits until its
// components are initialized (the sidecar's outbound health turns ready
// only after every component initialized); the others start once every
// store has been created. SQLite files are created by the launcher
// itself, before any sidecar (sqlitefile.go). Redis, MongoDB and the
// brokers create nothing that can race (the launcher creates the NATS
// streams itself; RabbitMQ declarations are idempotent; Kafka creates
// topics on first use). docs/ops.md, "Start order".
var creatingStores = map[string]bool{
	"state.mysql":      true,
	"state.postgresql": true,
	"state.postgres":   true,
}

// storeKey names the store a component initializes: its type and where
// it connects.
type storeKey struct{ typ, target string }

// sharedStores reads the component files in dir and returns, for every
// store of a creatingStores type, the app-ids whose sidecars initialize
// it (a component without scopes: every app-id in appIDs).
func sharedStores(dir string, appIDs []string) (map[storeKey][]string, error) {
	comps, err := readComponents(dir)
	if err != nil {
		return nil, err
	}
	stores := map[storeKey][]string{}
	for _, c := range comps {
		if !creatingStores[c.typ()] {
			continue
		}
		k := storeKey{typ: c.typ(), target: c.meta("connectionString", "url")}
		ids := c.Scopes
		if len(ids) == 0 {
			ids = appIDs
		}
		stores[k] = append(stores[k], ids...)
	}
	return stores, nil
}

// firstWaves returns the apps to start before the others, in waves: each
// wave holds at most one app of every store not created yet, and the
// first app (in the stack's order) of a store is in some wave. Apps in
// one wave share no such store, so they start at once.
func firstWaves(apps []*App, stores map[storeKey][]string) [][]*App {
	users := map[storeKey]map[string]bool{}
	var keys []storeKey
	for k, ids := range stores {
		users[k] = map[string]bool{}
		for _, id := range ids {
			users[k][id] = true
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].typ+"\x00"+keys[i].target < keys[j].typ+"\x00"+keys[j].target
	})
	created := map[storeKey]bool{}
	var waves [][]*App
	for {
		claimed := map[storeKey]bool{}
		var wave []*App
		for _, k := range keys {
			if created[k] || claimed[k] {
				continue
			}
			var first *App
			for _, a := range apps {
				if users[k][a.AppID] {
					first = a
					break
				}
			}
			if first == nil {
				created[k] = true // no app of this stack uses it
				continue
			}
			// first may use other stores not created yet: it may start
			// now only if no app of this wave uses one of them.
			var mine []storeKey
			for _, k2 := range keys {
				if !created[k2] && users[k2][first.AppID] {
					mine = append(mine, k2)
				}
			}
			if anyClaimed(claimed, mine) {
				continue
			}
			for _, k2 := range mine {
				claimed[k2] = true
			}
			wave = append(wave, first)
		}
		if len(wave) == 0 {
			return waves
		}
		slices.SortFunc(wave, func(a, b *App) int { return slices.Index(apps, a) - slices.Index(apps, b) })
		for k := range claimed {
			created[k] = true
		}
		waves = append(waves, wave)
	}
}

func anyClaimed(claimed map[storeKey]bool, keys []storeKey) bool {
	for _, k := range keys {
		if claimed[k] {
			return true
		}
	}
	return false
}

// waitComponents waits until a's sidecar has initialized its components
// (its outbound health is ready), or fails loudly when the sidecar exits
// first.
func (a *App) waitComponents(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	a.mu.Lock()
	url := "http://127.0.0.1:" + strconv.Itoa(a.DaprHTTP) + "/v1.0/healthz/outbound"
	dpr := a.dpr
	a.mu.Unlock()
	var last string
	for {
		if dpr.Exited() {
			return a.exitedError(dpr.Name, dpr.Err(), dpr.Tail())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not initialize its components: %w (last: %s)\n  %s",
				dpr.Name, ctx.Err(), last, strings.Join(dpr.Tail(), "\n  "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exitedError reports a process that exited before it was ready, leading
// with the component that failed to initialize and why when the process
// is a sidecar that says so.
func (a *App) exitedError(name string, err error, tail []string) error {
	if c := failedComponent(tail); c != "" {
		return fmt.Errorf("%s exited before it was ready: %s (%v); its last lines:\n  %s",
			name, c, err, strings.Join(tail, "\n  "))
	}
	return fmt.Errorf("%s exited before it was ready (%v):\n  %s", name, err, strings.Join(tail, "\n  "))
}

var (
	logMsg        = regexp.MustCompile(`msg="((?:[^"\\]|\\.)*)"`)
	failedInitMsg = regexp.MustCompile(`Failed to init component (\S+) \(([^)]+)\): (.*)`)
	// daprd's fatal line, when the one above is not among the last lines.
	fatalInitMsg = regexp.MustCompile(`process component (\S+) error: \[\w+\]: initialization error occurred for \S+ \(([^)]+)\): (.*)`)
)

// failedComponent finds in a sidecar's last log lines the component that
// failed to initialize and the cause, as "component NAME (TYPE/VERSION)
// failed to initialize: CAUSE", or "" when none did.
func failedComponent(lines []string) string {
	for _, l := range lines {
		msg := l
		if m := logMsg.FindStringSubmatch(l); m != nil {
			if s, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
				msg = s
			}
		}
		m := failedInitMsg.FindStringSubmatch(msg)
		if m == nil {
			m = fatalInitMsg.FindStringSubmatch(msg)
		}
		if m != nil {
			cause := m[3]
			// Dapr repeats the component in its error code prefix.
			if i := strings.LastIndex(cause, "("+m[2]+"): "); i >= 0 {
				cause = cause[i+len(m[2])+4:]
			}
			return fmt.Sprintf("component %s (%s) failed to initialize: %s", m[1], m[2], cause)
		}
	}
	return ""
}

// startApps starts every app: first, wave by wave, one sidecar of every
// store that creates its database, tables or file at start, each waited
// for until its components are initialized (firstWaves); then the rest at
// once.
func (s *Stack) startApps(ctx context.Context, resources string) error {
	var ids []string
	for _, a := range s.apps {
		ids = append(ids, a.AppID)
	}
	stores, err := sharedStores(resources, ids)
	if err != nil {
		return err
	}
	started := map[*App]bool{}
	for _, wave := range firstWaves(s.apps, stores) {
		for _, a := range wave {
			if err := a.start(); err != nil {
				return err
			}
			started[a] = true
		}
		for _, a := range wave {
			if err := s.waitFirst(ctx, a); err != nil {
				return err
			}
		}
	}
	for _, a := range s.apps {
		if !started[a] {
			if err := a.start(); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitFirst waits until a's sidecar has initialized its components,
// starting it again on new ports (up to three times) when another process
// took one of its ports, as Stack.waitReady does.
func (s *Stack) waitFirst(ctx context.Context, a *App) error {
	for retries := 0; ; retries++ {
		err := a.waitComponents(ctx)
		if err == nil || !a.bindFailed() || retries == 3 || ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(s.opts.Progress, "papo: %s lost a port to another process; restarting it on new ports\n", a.Name)
		if err := a.newSidecarPorts(); err != nil {
			return err
		}
		if err := s.writePrometheusConfig(); err != nil {
			return err
		}
		if err := a.replace(); err != nil {
			return err
		}
	}
}
