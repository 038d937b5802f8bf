package launcher

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PrometheusConfig is the path of the stack's Prometheus configuration:
// every app and sidecar as a target, the project's alert rules loaded.
func (s *Stack) PrometheusConfig() string { return filepath.Join(s.DataDir, "prometheus.yml") }

// Target is one scrape target of the stack.
type Target struct {
	Job   string // "papo" for apps, "dapr" for sidecars
	Addr  string // host:port
	Path  string // the metrics path
	AppID string
	Name  string // the replica, e.g. ws-2
}

// Targets lists what the stack's Prometheus configuration scrapes.
func (s *Stack) Targets() []Target {
	var out []Target
	for _, a := range s.apps {
		out = append(out, Target{Job: "papo", Addr: "127.0.0.1:" + strconv.Itoa(a.MetricsPort), Path: "/metrics", AppID: a.AppID, Name: a.Name})
	}
	for _, a := range s.apps {
		if a.DaprdMetricsURL() == "" {
			continue
		}
		a.mu.Lock()
		port := a.sidecar.MetricsPort
		a.mu.Unlock()
		out = append(out, Target{Job: "dapr", Addr: "127.0.0.1:" + strconv.Itoa(port), Path: "/", AppID: a.AppID, Name: a.Name})
	}
	return out
}

// writePrometheusConfig writes PrometheusConfig for the stack as
// planned, so `prometheus --config.file=<it>` scrapes the whole stack.
// It is written again when a sidecar moves to new ports.
func (s *Stack) writePrometheusConfig() error {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by the papo launcher for the stack in %s; rewritten at every start.
#   prometheus --config.file=%s
# Apps are job "papo", sidecars job "dapr"; every target has app_id and replica labels.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - %s
scrape_configs:
`, s.DataDir, s.PrometheusConfig(), filepath.Join(s.opts.Root, "observability", "prometheus", "alerts.yml"))
	for _, job := range []string{"papo", "dapr"} {
		var targets []Target
		for _, t := range s.Targets() {
			if t.Job == job {
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			continue
		}
		// Dapr's metrics carry app_id themselves (the same value).
		fmt.Fprintf(&b, "  - job_name: %s\n    metrics_path: %s\n    honor_labels: %t\n    static_configs:\n", job, targets[0].Path, job == "dapr")
		for _, t := range targets {
			fmt.Fprintf(&b, "      - targets: [%q]\n        labels: {app_id: %q, replica: %q}\n", t.Addr, t.AppID, t.Name)
		}
	}
	return os.WriteFile(s.PrometheusConfig(), []byte(b.String()), 0o644)
}

// MetricsSummary is the one line `make run` prints about metrics.
func (s *Stack) MetricsSummary() string {
	apps, sidecars := 0, 0
	var first []string
	for _, t := range s.Targets() {
		if t.Job == "papo" {
			apps++
		} else {
			sidecars++
		}
		if t.Name == "gateway" || t.Name == "ws-1" {
			first = append(first, t.Name+"/"+t.Job+" "+t.Addr)
		}
	}
	note := ""
	if sidecars == 0 {
		note = " (sidecar metrics off: this daprd would serve them on every interface; papo's own build serves them on loopback)"
	}
	return fmt.Sprintf("metrics: %d apps and %d sidecars on 127.0.0.1 (%s, …)%s; Prometheus config: %s",
		apps, sidecars, strings.Join(first, ", "), note, s.PrometheusConfig())
}

// tracingConfig writes the Dapr Configuration that sends every sidecar's
// spans to the OTLP/HTTP endpoint, sampling all (the apps' spans are
// sampled by their parent's decision), and returns its path. Applied
// after the app's dapr/<app-id>.yaml, it overrides only the tracing section.
func (s *Stack) tracingConfig(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("trace endpoint %q is not an http(s) URL", endpoint)
	}
	path := filepath.Join(s.DataDir, "tracing.yaml")
	content := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: papo-launcher-tracing
spec:
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: %q
      isSecure: %t
      protocol: http
`, u.Host, u.Scheme == "https")
	return path, os.WriteFile(path, []byte(content), 0o644)
}
