package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// metricsPort is where every app serves /metrics in a pod.
const metricsPort = 9464

// namespace is where k8s/base puts papo; dapr/kubernetes/config.yaml's
// access control names it in every policy.
const namespace = "papo"

func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "k8s", "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 4 {
		t.Fatalf("overlays %v: want one per non-local profile", names)
	}
	return names
}

// build runs kustomize as `kubectl apply -k` would (root-only load
// restrictions).
func build(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	abs := mustAbs(t, filepath.Join(root, dir))
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

// decode converts a kustomize resource to a typed object.
func decode(t *testing.T, r interface{ AsYAML() ([]byte, error) }, v any) {
	t.Helper()
	b, err := r.AsYAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
}

func TestKubernetesOverlaysRunEveryAppWithItsSidecar(t *testing.T) {
	for _, overlay := range overlays(t) {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, filepath.Join("k8s", "overlays", overlay))
			deployments := map[string]appsv1.Deployment{}
			services := map[string]corev1.Service{}
			var policies []networkingv1.NetworkPolicy
			components := map[string]bool{}
			var configs []string
			for _, r := range m.Resources() {
				if ns := r.GetNamespace(); ns != namespace && r.GetKind() != "Namespace" {
					t.Errorf("%s/%s is in namespace %q, want %q", r.GetKind(), r.GetName(), ns, namespace)
				}
				switch r.GetKind() {
				case "Deployment":
					var d appsv1.Deployment
					decode(t, r, &d)
					deployments[d.Name] = d
				case "Service":
					var s corev1.Service
					decode(t, r, &s)
					services[s.Name] = s
				case "Component":
					components[r.GetName()] = true
				case "Configuration":
					configs = append(configs, r.GetName())
				case "NetworkPolicy":
					var np networkingv1.NetworkPolicy
					decode(t, r, &np)
					policies = append(policies, np)
				}
			}
			for name := range wantComponents {
				if !components[name] {
					t.Errorf("component %s missing", name)
				}
			}
			if len(deployments) != len(apps) {
				t.Errorf("%d deployments, want %d", len(deployments), len(apps))
			}
			for _, a := range apps {
				d, ok := deployments[a.id]
				if !ok {
					t.Errorf("no Deployment %s", a.id)
					continue
				}
				checkDeployment(t, a, d, configs)
			}
			for _, name := range []string{"gateway", "ws"} {
				s, ok := services[name]
				if !ok {
					t.Errorf("no Service %s", name)
					continue
				}
				a := appByID(t, name)
				if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != int32(a.port) ||
					s.Spec.Ports[0].TargetPort != intstr.FromString("http") {
					t.Errorf("Service %s ports %+v, want %d -> http", name, s.Spec.Ports, a.port)
				}
				if s.Spec.Selector["app.kubernetes.io/name"] != name {
					t.Errorf("Service %s selects %v", name, s.Spec.Selector)
				}
			}
			if ws := deployments["ws"].Spec.Template.Spec.Containers[0]; envValue(ws, "WS_ALLOWED_ORIGINS") == "" {
				t.Errorf("ws has no WS_ALLOWED_ORIGINS: browsers could not open a socket")
			}
			// The gateway proxies /ws to the ws Service.
			gw := deployments["gateway"].Spec.Template.Spec.Containers[0]
			if got, want := envValue(gw, "GATEWAY_WS_UPSTREAMS"), "http://ws:"+strconv.Itoa(appByID(t, "ws").port); got != want {
				t.Errorf("gateway GATEWAY_WS_UPSTREAMS = %q, want %q", got, want)
			}
			checkNetworkPolicies(t, policies, deployments)
		})
	}
}

func checkDeployment(t *testing.T, a app, d appsv1.Deployment, configs []string) {
	t.Helper()
	if d.Spec.Replicas == nil || int(*d.Spec.Replicas) != a.replicas {
		got := "unset"
		if d.Spec.Replicas != nil {
			got = strconv.Itoa(int(*d.Spec.Replicas))
		}
		t.Errorf("%s replicas %s, want %d", a.id, got, a.replicas)
	}
	ann := d.Spec.Template.Annotations
	for k, want := range map[string]string{
		"dapr.io/enabled":  "true",
		"dapr.io/app-id":   a.id,
		"dapr.io/app-port": strconv.Itoa(a.port),
		// Its own Configuration: the app's API allow-list.
		"dapr.io/config": "papo-" + a.id,
		// The sidecar's API on loopback, behind the Dapr API token; the
		// app API token on every call to the app.
		"dapr.io/sidecar-listen-addresses": "127.0.0.1",
		"dapr.io/api-token-secret":         daprTokenSecret,
		"dapr.io/app-token-secret":         appTokenSecret,
	} {
		if ann[k] != want {
			t.Errorf("%s annotation %s = %q, want %q", a.id, k, ann[k], want)
		}
	}
	found := false
	for _, c := range configs {
		found = found || c == ann["dapr.io/config"]
	}
	if !found {
		t.Errorf("%s dapr.io/config %q names no Configuration in the build (%v)", a.id, ann["dapr.io/config"], configs)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s has %d containers; the injector adds daprd", a.id, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != int32(a.port) || ports["metrics"] != metricsPort {
		t.Errorf("%s container ports %+v, want http %d and metrics %d", a.id, c.Ports, a.port, metricsPort)
	}
	// Metrics on a port of their own, announced to Prometheus; the
	// sidecar's too.
	if got := envValue(c, "METRICS_ADDR"); got != ":"+strconv.Itoa(metricsPort) {
		t.Errorf("%s METRICS_ADDR = %q, want :%d", a.id, got, metricsPort)
	}
	for k, want := range map[string]string{
		"prometheus.io/scrape":   "true",
		"prometheus.io/port":     strconv.Itoa(metricsPort),
		"prometheus.io/path":     "/metrics",
		"dapr.io/enable-metrics": "true",
	} {
		if ann[k] != want {
			t.Errorf("%s annotation %s = %q, want %q", a.id, k, ann[k], want)
		}
	}
	if got := envValue(c, "APP_PORT"); got != strconv.Itoa(a.port) {
		t.Errorf("%s APP_PORT = %q, want %d", a.id, got, a.port)
	}
	// The tokens come from the operator's Secrets, never from a value.
	for env, secret := range map[string]string{"APP_API_TOKEN": appTokenSecret, "DAPR_API_TOKEN": daprTokenSecret} {
		if ref := envSecret(c, env); ref == nil || ref.Name != secret || ref.Key != "token" {
			t.Errorf("%s %s = %+v, want secretKeyRef %s/token", a.id, env, ref, secret)
		}
	}
	// Only the gateway (public) and ws (the gateway proxies to it) listen
	// beyond the pod; the others listen on loopback for their sidecar and
	// answer the kubelet on a probe port that serves nothing else.
	probePort := "http"
	switch a.id {
	case "gateway", "ws":
		if got := envValue(c, "APP_HOST"); got != "0.0.0.0" {
			t.Errorf("%s APP_HOST = %q: the gateway and ws are reached from other pods", a.id, got)
		}
		if len(c.Ports) != 2 {
			t.Errorf("%s container ports %+v, want http and metrics only", a.id, c.Ports)
		}
	default:
		if got := envValue(c, "APP_HOST"); got != "127.0.0.1" {
			t.Errorf("%s APP_HOST = %q: only its sidecar, in the pod, may call it", a.id, got)
		}
		if got := envValue(c, "APP_PROBE_PORT"); got != strconv.Itoa(int(ports["probe"])) || got == "0" {
			t.Errorf("%s APP_PROBE_PORT = %q, container port probe %d", a.id, got, ports["probe"])
		}
		probePort = "probe"
	}
	// The gateway's own /readyz counts every service behind it; its
	// readiness for the load balancer is its own (?scope=gateway), so one
	// service down does not take every gateway out of service.
	readyz := "/readyz"
	if a.id == "gateway" {
		readyz = "/readyz?scope=gateway"
	}
	for probe, want := range map[*corev1.Probe]string{c.ReadinessProbe: readyz, c.LivenessProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s has no %s probe", a.id, want)
			continue
		}
		if probe.HTTPGet.Path != want || probe.HTTPGet.Port != intstr.FromString(probePort) {
			t.Errorf("%s probe %s on %v, want %s on %s", a.id, probe.HTTPGet.Path, probe.HTTPGet.Port, want, probePort)
		}
	}
	if sel := d.Spec.Selector.MatchLabels["app.kubernetes.io/name"]; sel != a.id || d.Spec.Template.Labels["app.kubernetes.io/name"] != a.id {
		t.Errorf("%s selector/labels do not match", a.id)
	}
}

// The Secrets (key "token") the operator creates for the API tokens.
const (
	appTokenSecret  = "papo-app-api-token"
	daprTokenSecret = "papo-dapr-api-token"
)

func envSecret(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

// checkNetworkPolicies checks that ingress to papo's pods is closed but
// for the gateway's port from anywhere, ws's port from the gateway and the
// ingress controller's namespace, the
// sidecars' internal gRPC port from papo's pods, and the probe ports.
func checkNetworkPolicies(t *testing.T, policies []networkingv1.NetworkPolicy, deployments map[string]appsv1.Deployment) {
	t.Helper()
	denyAll := false
	// open[app][port] lists who may connect: "*" anyone, or the app names
	// whose pods may.
	open := map[string]map[int32][]string{}
	for _, np := range policies {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Empty() && len(np.Spec.Ingress) == 0 {
			denyAll = true
		}
		for name, d := range deployments {
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, rule := range np.Spec.Ingress {
				var from []string
				if len(rule.From) == 0 {
					from = []string{"*"}
				}
				for _, peer := range rule.From {
					if ns := peer.NamespaceSelector; ns != nil && peer.PodSelector == nil && peer.IPBlock == nil &&
						len(ns.MatchExpressions) == 0 && len(ns.MatchLabels) == 1 && ns.MatchLabels["kubernetes.io/metadata.name"] != "" {
						from = append(from, "ns:"+ns.MatchLabels["kubernetes.io/metadata.name"])
						continue
					}
					if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil {
						from = append(from, "*")
						continue
					}
					ps, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
					if err != nil {
						t.Fatal(err)
					}
					for other, od := range deployments {
						if ps.Matches(labels.Set(od.Spec.Template.Labels)) {
							from = append(from, other)
						}
					}
				}
				if len(rule.Ports) == 0 {
					t.Errorf("%s: a rule open on every port for %v", np.Name, from)
				}
				for _, p := range rule.Ports {
					if open[name] == nil {
						open[name] = map[int32][]string{}
					}
					open[name][p.Port.IntVal] = append(open[name][p.Port.IntVal], from...)
				}
			}
		}
	}
	if !denyAll {
		t.Errorf("no NetworkPolicy denies ingress to every pod by default")
	}
	var all []string
	for name := range deployments {
		all = append(all, name)
	}
	for name := range deployments {
		a := appByID(t, name)
		want := map[int32][]string{
			50002: all,   // sidecar to sidecar (mTLS)
			3501:  {"*"}, // daprd's health, probed by the kubelet
		}
		switch name {
		case "gateway":
			want[int32(a.port)] = []string{"*"}
		case "ws":
			// The gateway's relay and the ingress controller (/ws).
			want[int32(a.port)] = []string{"gateway", "ns:ingress-nginx"}
		default:
			want[8090] = []string{"*"} // the probe listener: /healthz and /readyz only
		}
		got := open[name]
		for port, who := range got {
			w, ok := want[port]
			g := slices.Clone(who)
			sort.Strings(g)
			g = slices.Compact(g)
			w = slices.Clone(w)
			sort.Strings(w)
			if !ok || !slices.Equal(g, w) {
				t.Errorf("%s port %d is open to %v, want %v", name, port, g, w)
			}
		}
		for port := range want {
			if _, ok := got[port]; !ok {
				t.Errorf("%s port %d is closed; it must be open", name, port)
			}
		}
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestKubernetesIngressRoutesWSToTheReplicas: every overlay's ingress
// sends /ws straight to the ws Service (one hop per socket, the replicas
// check the token at the handshake), with proxy timeouts longer than a
// live socket stays silent, and the rest to the gateway.
func TestKubernetesIngressRoutesWSToTheReplicas(t *testing.T) {
	for _, overlay := range overlays(t) {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, filepath.Join("k8s", "overlays", overlay))
			routes := map[string]string{} // path -> service:port
			for _, r := range m.Resources() {
				if r.GetKind() != "Ingress" {
					continue
				}
				var in networkingv1.Ingress
				decode(t, r, &in)
				for _, rule := range in.Spec.Rules {
					for _, p := range rule.HTTP.Paths {
						routes[p.Path] = p.Backend.Service.Name + ":" + p.Backend.Service.Port.Name
						if p.Path != "/ws" {
							continue
						}
						if p.PathType == nil || *p.PathType != networkingv1.PathTypeExact {
							t.Errorf("/ws path type %v, want Exact", p.PathType)
						}
						// Longer than the server waits for a pong (60 s):
						// a proxy timeout must never end a live socket.
						for _, a := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
							secs, err := strconv.Atoi(in.Annotations["nginx.ingress.kubernetes.io/"+a])
							if err != nil || secs <= 60 {
								t.Errorf("/ws %s = %q, want more than 60 s", a, in.Annotations["nginx.ingress.kubernetes.io/"+a])
							}
						}
					}
				}
			}
			for path, got := range routes {
				if strings.HasPrefix(got, "ws:") && path != "/ws" {
					t.Errorf("ingress sends %s to the ws Service, which serves only /ws", path)
				}
			}
			for path, want := range map[string]string{"/ws": "ws:http", "/": "gateway:http"} {
				if got := routes[path]; got != want {
					t.Errorf("ingress sends %s to %q, want %q", path, got, want)
				}
			}
		})
	}
}
