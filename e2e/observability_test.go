package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
	"github.com/papochat/papo/platform/telemetry/otlptest"
)

// promConfig is the part of the launcher's prometheus.yml the tests read.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// scrapeTarget is one target of the generated configuration.
type scrapeTarget struct {
	job, url, replica, appID string
}

// targetsOf reads the stack's generated Prometheus configuration.
func targetsOf(t *testing.T, s *launcher.Stack) (promConfig, []scrapeTarget) {
	t.Helper()
	b, err := os.ReadFile(s.PrometheusConfig())
	if err != nil {
		t.Fatal(err)
	}
	var cfg promConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", s.PrometheusConfig(), err)
	}
	var out []scrapeTarget
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, addr := range st.Targets {
				out = append(out, scrapeTarget{job: sc.JobName, url: "http://" + addr + sc.MetricsPath,
					replica: st.Labels["replica"], appID: st.Labels["app_id"]})
			}
		}
	}
	return cfg, out
}

// scrape is one target's exposition, raw and parsed.
type scrape struct {
	raw      []byte
	families map[string]*dto.MetricFamily
}

func scrapeOnce(t *testing.T, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse the exposition of %s: %v", url, err)
	}
	return scrape{raw: raw, families: fams}
}

// value is the sum over the series of name whose labels include kv: a
// counter's or gauge's value, or a histogram's count.
func (s scrape) value(name string, kv ...string) float64 {
	mf := s.families[name]
	if mf == nil {
		return 0
	}
	total := 0.0
series:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(kv); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == kv[i] && l.GetValue() == kv[i+1])
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			total += m.GetUntyped().GetValue()
		default:
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// promtool returns the path of promtool, or skips (fails with
// PAPO_REQUIRE_INFRA=1): Debian's prometheus package ships it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PAPO_REQUIRE_INFRA") == "1" {
			t.Fatal("promtool is not installed (apt-get install prometheus)")
		}
		t.Skip("promtool is not installed (apt-get install prometheus); PAPO_REQUIRE_INFRA=1 makes this a failure")
	}
	return p
}

// checkExposition runs `promtool check metrics` on a scrape. papo's own
// metrics must lint clean; Dapr's are only required to parse (daprd 1.14
// names counters *_count, which the linter flags: exit status 3).
func checkExposition(t *testing.T, tool string, tg scrapeTarget, raw []byte) {
	t.Helper()
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	var exit *exec.ExitError
	if tg.job == "dapr" && errors.As(err, &exit) && exit.ExitCode() == 3 {
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.HasPrefix(line, "dapr_") {
				t.Errorf("promtool on %s (%s): %s", tg.replica, tg.job, line)
			}
		}
		return
	}
	t.Errorf("promtool check metrics on %s (%s %s): %v\n%s", tg.replica, tg.job, tg.url, err, out)
}

// TestAChatMovesTheMetricsByWhatHappened runs a chat on the local stack,
// scrapes every target of the generated prometheus.yml, checks each
// exposition with promtool, and checks that one message moved the
// counters by what it caused: one append, three live deliveries (two
// members on ws-1, one on ws-2) each timed once, one ack.
func TestAChatMovesTheMetricsByWhatHappened(t *testing.T) {
	s := stack(t, "local")
	tool := promtool(t)
	cfg, targets := targetsOf(t, s)

	// Every app and every sidecar is a target.
	apps, sidecars := map[string]bool{}, map[string]bool{}
	for _, tg := range targets {
		if tg.job == "papo" {
			apps[tg.replica] = true
		} else {
			sidecars[tg.replica] = true
		}
	}
	for _, a := range s.Apps("") {
		if !apps[a.Name] || !sidecars[a.Name] {
			t.Errorf("%s: app target %v, sidecar target %v; want both", a.Name, apps[a.Name], sidecars[a.Name])
		}
	}
	if len(cfg.RuleFiles) != 1 {
		t.Fatalf("rule_files %v, want the project's alert rules", cfg.RuleFiles)
	}
	if _, err := os.Stat(cfg.RuleFiles[0]); err != nil {
		t.Fatalf("the rules the configuration loads: %v", err)
	}
	// Prometheus itself accepts the configuration (and its rules).
	if out, err := exec.Command(tool, "check", "config", s.PrometheusConfig()).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}

	ctx := context.Background()
	alice, bob, carol := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "carol")
	room, err := alice.CreateRoom(ctx, "metrics "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*user{bob, carol} {
		if _, err := u.JoinRoom(ctx, room.ID); err != nil {
			t.Fatal(err)
		}
	}
	wsA, wsB, wsC := dialReplica(t, s, "ws-1", alice), dialReplica(t, s, "ws-2", bob), dialReplica(t, s, "ws-1", carol)
	for _, ws := range []*client.WS{wsA, wsB, wsC} {
		goLive(t, ws)
	}
	cols := []*collector{newCollector(wsA), newCollector(wsB), newCollector(wsC)}

	scrapeAll := func() map[string]scrape {
		out := map[string]scrape{}
		for _, tg := range targets {
			out[tg.job+"/"+tg.replica] = scrapeOnce(t, tg.url)
		}
		return out
	}
	before := scrapeAll()

	if err := wsA.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: "m1", Text: "counted once"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		c.until(t, 30*time.Second, fmt.Sprint("the message on socket ", i), func() bool { return len(c.messages(room.ID)) == 1 })
	}
	cols[0].until(t, 30*time.Second, "the ack", func() bool { return len(cols[0].acks) == 1 })

	delta := func(after map[string]scrape, key, name string, kv ...string) float64 {
		return after[key].value(name, kv...) - before[key].value(name, kv...)
	}
	type want struct {
		target, name string
		labels       []string
		n            float64
	}
	wants := []want{
		{"papo/message", "papo_message_appended_events_total", nil, 1},
		{"papo/message", "papo_message_submissions_total", []string{"outcome", "stored"}, 1},
		{"papo/ws-1", "papo_ws_frames_received_total", []string{"type", "send"}, 1},
		{"papo/ws-1", "papo_ws_submissions_total", nil, 1},
		{"papo/ws-1", "papo_ws_submit_duration_seconds", []string{"result", "ok"}, 1},
		{"papo/ws-1", "papo_ws_frames_sent_total", []string{"type", "ack"}, 1},
		// Three deliveries: alice and carol on ws-1, bob on ws-2, each
		// timed once from commit to socket.
		{"papo/ws-1", "papo_ws_frames_sent_total", []string{"type", "event"}, 2},
		{"papo/ws-2", "papo_ws_frames_sent_total", []string{"type", "event"}, 1},
		{"papo/ws-1", "papo_ws_delivery_latency_seconds", nil, 2},
		{"papo/ws-2", "papo_ws_delivery_latency_seconds", nil, 1},
		{"papo/ws-1", "papo_ws_fanout_lag_seconds", nil, 1},
		{"papo/ws-2", "papo_ws_fanout_lag_seconds", nil, 1},
	}
	var after map[string]scrape
	var wrong []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		after = scrapeAll()
		wrong = nil
		for _, w := range wants {
			if got := delta(after, w.target, w.name, w.labels...); got != w.n {
				wrong = append(wrong, fmt.Sprintf("%s %s%v moved by %v, want %v", w.target, w.name, w.labels, got, w.n))
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // counters settle a moment after the frames
	}
	for _, w := range wrong {
		t.Error(w)
	}

	// What else a message moves, at least once.
	for _, w := range []want{
		{"papo/message", "papo_message_rounds_total", nil, 1},
		{"papo/message", "papo_state_operation_duration_seconds", []string{"operation", "bulk_get", "result", "ok"}, 1},
		{"papo/message", "papo_pubsub_publish_duration_seconds", []string{"topic", "room.events", "result", "ok"}, 1},
		{"papo/auth", "papo_auth_logins_total", []string{"result", "ok"}, 0}, // logged in before the first scrape
		{"dapr/message", "dapr_component_pubsub_egress_count", nil, 1},
	} {
		if got := delta(after, w.target, w.name, w.labels...); got < w.n {
			t.Errorf("%s %s%v moved by %v, want at least %v", w.target, w.name, w.labels, got, w.n)
		}
	}
	if got := after["papo/auth"].value("papo_auth_logins_total", "result", "ok"); got < 3 {
		t.Errorf("papo_auth_logins_total{result=ok} = %v, want at least the 3 logins of this test", got)
	}
	if got := after["papo/ws-1"].value("papo_ws_connections"); got < 2 {
		t.Errorf("papo_ws_connections on ws-1 = %v, want at least alice's and carol's", got)
	}

	// Every exposition is valid, and every target has runtime metrics.
	for _, tg := range targets {
		sc := after[tg.job+"/"+tg.replica]
		checkExposition(t, tool, tg, sc.raw)
		runtime := "go_goroutines"
		if sc.families[runtime] == nil {
			t.Errorf("%s (%s) has no %s", tg.replica, tg.job, runtime)
		}
		if tg.job == "papo" && sc.families["process_cpu_seconds_total"] == nil {
			t.Errorf("%s has no process metrics", tg.replica)
		}
	}
}

// TestTheDashboardAndRulesNameOnlyMetricsThatExist: `promtool check rules`
// accepts the alert rules, and every metric a rule or a dashboard panel
// names is in a scrape of the running stack.
func TestTheDashboardAndRulesNameOnlyMetricsThatExist(t *testing.T) {
	s := stack(t, "local")
	tool := promtool(t)
	root, err := launcher.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(root, "observability", "prometheus", "alerts.yml")
	if out, err := exec.Command(tool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	_, targets := targetsOf(t, s)
	// A message first, so that every series that only appears once used
	// (histograms with labels) exists.
	alice := newUser(t, s, "alice")
	room, err := alice.CreateRoom(context.Background(), "dash "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	ws := newCollector(dialGateway(t, alice))
	goLive(t, ws.ws)
	if err := ws.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: "d1", Text: "for the dashboard"}); err != nil {
		t.Fatal(err)
	}
	ws.until(t, 30*time.Second, "the ack", func() bool { return len(ws.acks) == 1 })

	exists := map[string]bool{}
	for _, tg := range targets {
		for name, mf := range scrapeOnce(t, tg.url).families {
			exists[name] = true
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					exists[name+suffix] = true
				}
			}
		}
	}
	named, err := metricsNamedIn(root)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for name, where := range named {
		if !exists[name] {
			missing = append(missing, name+" ("+where+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("named by a rule or dashboard but in no scrape:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(named) < 10 {
		t.Fatalf("found only %d metric names in the rules and dashboards: %v", len(named), named)
	}
}

// TestASendIsOneTraceFromSocketToEveryReplica starts a stack that
// exports spans (apps and sidecars) to an in-process OTLP receiver and
// checks that one send yields one trace with the ws send, the call to the
// message service, its round and store calls, the publish, and the
// delivery on each ws replica, Dapr's own spans among them.
func TestASendIsOneTraceFromSocketToEveryReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts the whole stack")
	}
	rcv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	root, err := launcher.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tail := &logTail{}
	tail.showOnFailure(t)
	// Export spans every 200 ms rather than every 5 s: the sidecars read
	// this from the environment they inherit, the apps from Env below.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := launcher.Start(ctx, launcher.Options{
		Root: root, Profile: "local", DataDir: t.TempDir(), GatewayAddr: "127.0.0.1:0",
		Log: tail, Progress: testLog{t}, TraceEndpoint: rcv.URL(),
		Env: map[string]string{"LOG_LEVEL": "warn", "OTEL_BSP_SCHEDULE_DELAY": "200"},
	})
	if err != nil {
		t.Fatalf("start a traced stack: %v", err)
	}
	defer s.Stop()

	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room, err := alice.CreateRoom(ctx, "traced "+randomName(""), api.RoomPublic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	wsA, wsB := newCollector(dialReplica(t, s, "ws-1", alice)), newCollector(dialReplica(t, s, "ws-2", bob))
	goLive(t, wsA.ws)
	goLive(t, wsB.ws)
	clientID := randomName("traced-")
	if err := wsA.ws.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: clientID, Text: "follow me"}); err != nil {
		t.Fatal(err)
	}
	wsA.until(t, 30*time.Second, "the ack", func() bool { return len(wsA.acks) == 1 })
	wsB.until(t, 30*time.Second, "the message", func() bool { return len(wsB.messages(room.ID)) == 1 })

	var traceID string
	var spans []otlptest.Span
	has := func(service, name string) bool {
		for _, sp := range spans {
			if sp.Service == service && sp.Name == name {
				return true
			}
		}
		return false
	}
	replicas := func() map[string]bool {
		out := map[string]bool{}
		for _, sp := range spans {
			if sp.Name == "ws deliver" {
				out[sp.Attrs["papo.replica"]] = true
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, sp := range rcv.Spans() {
			if sp.Name == "ws send" && sp.Attrs["papo.client_id"] == clientID {
				traceID = sp.TraceID
			}
		}
		if traceID != "" {
			spans = rcv.Trace(traceID)
		}
		sidecars := 0
		for _, sp := range spans {
			if !papoSpan(sp.Name) {
				sidecars++
			}
		}
		if (has("ws", "ws submit") && has("message", "message round") && has("message", "round announce") && has("message", "round materialize") &&
			len(replicas()) == 2 && sidecars > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if traceID == "" {
		t.Fatalf("no ws send span for %s among %d spans", clientID, len(rcv.Spans()))
	}
	var names []string
	for _, sp := range spans {
		names = append(names, sp.Service+": "+sp.Name)
	}
	sort.Strings(names)
	t.Logf("the send's trace %s:\n  %s", traceID, strings.Join(names, "\n  "))
	for _, w := range []struct{ service, name string }{
		{"ws", "ws send"}, {"ws", "ws submit"},
		{"message", "POST /internal/v1/submissions"}, {"message", "message round"},
		{"message", "round read"}, {"message", "round commit"}, {"message", "round announce"}, {"message", "round materialize"},
		{"message", "state bulk_get"},
		// The sidecars' own spans (daprd 1.14 names them so): the
		// invocation, the publish, and the streaming delivery to ws.
		{"message", "CallLocal/message/internal/v1/submissions"},
		{"message", "/dapr.proto.runtime.v1.Dapr/PublishEvent"},
		{"ws", "pubsub/room.events"},
	} {
		if !has(w.service, w.name) {
			t.Errorf("the trace lacks %s's %q", w.service, w.name)
		}
	}
	if r := replicas(); !r["ws-1"] || !r["ws-2"] {
		t.Errorf("deliveries traced on %v, want ws-1 and ws-2", r)
	}
	// Dapr's spans: the sidecars traced the invocation and the publish.
	dapr := 0
	for _, sp := range spans {
		if !papoSpan(sp.Name) {
			dapr++
		}
	}
	if dapr == 0 {
		seen := map[string]bool{}
		for _, sp := range rcv.Spans() {
			if !papoSpan(sp.Name) {
				seen[sp.Service+": "+sp.Name] = true
			}
		}
		t.Errorf("no span of the sidecars joined the trace; the sidecars' spans received: %v", seen)
	}
}

// papoSpan reports whether a span name is one papo's apps make (the
// others are the sidecars').
func papoSpan(name string) bool {
	for _, prefix := range []string{"ws ", "round ", "state ", "message round", "GET", "POST", "PUT", "DELETE", "PATCH"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// metricsNamedIn returns the metric names the alert rules and the
// dashboards use, each with the file that names it.
func metricsNamedIn(root string) (map[string]string, error) {
	named := map[string]string{}
	files, err := filepath.Glob(filepath.Join(root, "observability", "*", "*"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".yml") && !strings.HasSuffix(f, ".json") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, name := range metricNames(string(b)) {
			named[name] = filepath.Base(f)
		}
	}
	return named, nil
}

// metricNames finds the papo_, dapr_, go_ and process_ metric names in a
// text (PromQL in rules and dashboard targets).
func metricNames(s string) []string {
	var out []string
	for _, prefix := range []string{"papo_", "dapr_", "go_", "process_"} {
		for i := 0; ; {
			j := strings.Index(s[i:], prefix)
			if j < 0 {
				break
			}
			start := i + j
			end := start
			for end < len(s) && (s[end] == '_' || s[end] >= 'a' && s[end] <= 'z' || s[end] >= '0' && s[end] <= '9') {
				end++
			}
			if start == 0 || !isNameChar(s[start-1]) {
				out = append(out, s[start:end])
			}
			i = end
		}
	}
	return out
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
