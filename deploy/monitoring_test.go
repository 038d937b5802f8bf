package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// TestThePrometheusRuleHoldsTheAlertRules: k8s/monitoring's PrometheusRule
// carries exactly the groups of observability/prometheus/alerts.yml (the
// file the launcher's Prometheus loads and the e2e tests check).
func TestThePrometheusRuleHoldsTheAlertRules(t *testing.T) {
	var rules struct {
		Groups []any `json:"groups"`
	}
	var cr struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	read(t, filepath.Join("observability", "prometheus", "alerts.yml"), &rules)
	read(t, filepath.Join("k8s", "monitoring", "prometheusrule.yaml"), &cr)
	if cr.Kind != "PrometheusRule" || len(rules.Groups) == 0 {
		t.Fatalf("kind %q, %d groups", cr.Kind, len(rules.Groups))
	}
	if !reflect.DeepEqual(cr.Spec.Groups, rules.Groups) {
		t.Fatal("k8s/monitoring/prometheusrule.yaml and observability/prometheus/alerts.yml differ: copy the groups over")
	}
}

// TestThePodMonitorScrapesAppsAndSidecars: both the app's metrics port and
// the sidecar's, with the labels the dashboard and rules use.
func TestThePodMonitorScrapesAppsAndSidecars(t *testing.T) {
	var pm struct {
		Kind string `json:"kind"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port        string `json:"port"`
				Path        string `json:"path"`
				Relabelings []struct {
					TargetLabel string `json:"targetLabel"`
					Replacement string `json:"replacement"`
				} `json:"relabelings"`
			} `json:"podMetricsEndpoints"`
		} `json:"spec"`
	}
	read(t, filepath.Join("k8s", "monitoring", "podmonitor.yaml"), &pm)
	if pm.Kind != "PodMonitor" || pm.Spec.Selector.MatchLabels["app.kubernetes.io/part-of"] != "papo" {
		t.Fatalf("kind %q selects %v", pm.Kind, pm.Spec.Selector.MatchLabels)
	}
	want := map[string]string{"metrics": "papo", "dapr-metrics": "dapr"}
	for _, ep := range pm.Spec.Endpoints {
		labels := map[string]string{}
		for _, r := range ep.Relabelings {
			labels[r.TargetLabel] = r.Replacement
		}
		if job, ok := want[ep.Port]; !ok || labels["job"] != job {
			t.Errorf("endpoint %s: job %q", ep.Port, labels["job"])
		}
		if _, ok := labels["app_id"]; !ok {
			t.Errorf("endpoint %s sets no app_id", ep.Port)
		}
		if _, ok := labels["replica"]; !ok {
			t.Errorf("endpoint %s sets no replica", ep.Port)
		}
		delete(want, ep.Port)
	}
	if len(want) > 0 {
		t.Errorf("no endpoint for %v", want)
	}
	// Every overlay offers the component.
	for _, o := range overlays(t) {
		b, err := os.ReadFile(filepath.Join(root, "k8s", "overlays", o, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "../../monitoring") {
			t.Errorf("overlay %s does not offer k8s/monitoring", o)
		}
	}
}

func read(t *testing.T, rel string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// TestTheMonitoringComponentOpensOnlyTheMetricsPorts: k8s/base denies
// ingress by default, so the component lets Prometheus's namespace reach
// the apps' and sidecars' metrics ports, and nothing more.
func TestTheMonitoringComponentOpensOnlyTheMetricsPorts(t *testing.T) {
	var np networkingv1.NetworkPolicy
	read(t, filepath.Join("k8s", "monitoring", "networkpolicy.yaml"), &np)
	if got := np.Spec.PodSelector.MatchLabels["app.kubernetes.io/part-of"]; got != "papo" {
		t.Errorf("selects %v, want every papo pod", np.Spec.PodSelector.MatchLabels)
	}
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("%d ingress rules, want 1", len(np.Spec.Ingress))
	}
	rule := np.Spec.Ingress[0]
	if len(rule.From) != 1 || rule.From[0].NamespaceSelector == nil || rule.From[0].PodSelector != nil || rule.From[0].IPBlock != nil {
		t.Errorf("from %+v, want one namespace (Prometheus's)", rule.From)
	}
	var ports []int32
	for _, p := range rule.Ports {
		ports = append(ports, p.Port.IntVal)
	}
	if want := []int32{metricsPort, 9090}; !slices.Equal(ports, want) {
		t.Errorf("ports %v, want %v (the app's and the sidecar's metrics)", ports, want)
	}
	var kust struct {
		Resources []string `json:"resources"`
	}
	read(t, filepath.Join("k8s", "monitoring", "kustomization.yaml"), &kust)
	if !slices.Contains(kust.Resources, "networkpolicy.yaml") {
		t.Errorf("the component's resources %v leave the NetworkPolicy out", kust.Resources)
	}
}
