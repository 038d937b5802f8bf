package deploy

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

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
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != int32(a.port) || c.Ports[0].Name != "http" {
		t.Errorf("%s container ports %+v, want http %d", a.id, c.Ports, a.port)
	}
	if got := envValue(c, "APP_PORT"); got != strconv.Itoa(a.port) {
		t.Errorf("%s APP_PORT = %q, want %d", a.id, got, a.port)
	}
	if got := envValue(c, "APP_HOST"); got != "0.0.0.0" {
		t.Errorf("%s APP_HOST = %q: the kubelet probes the pod IP", a.id, got)
	}
	for probe, want := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s has no %s probe", a.id, want)
			continue
		}
		if probe.HTTPGet.Path != want || probe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s probe %s on %v, want %s on http", a.id, probe.HTTPGet.Path, probe.HTTPGet.Port, want)
		}
	}
	if sel := d.Spec.Selector.MatchLabels["app.kubernetes.io/name"]; sel != a.id || d.Spec.Template.Labels["app.kubernetes.io/name"] != a.id {
		t.Errorf("%s selector/labels do not match", a.id)
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

// TestKubernetesIngressRoutesWebSocketsStraightToTheReplicas: every
// overlay's ingress sends /ws to the ws Service, with proxy timeouts
// longer than a live socket stays silent, and the rest to the gateway.
func TestKubernetesIngressRoutesWebSocketsStraightToTheReplicas(t *testing.T) {
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
			for path, want := range map[string]string{"/ws": "ws:http", "/": "gateway:http"} {
				if got := routes[path]; got != want {
					t.Errorf("ingress sends %s to %q, want %q", path, got, want)
				}
			}
		})
	}
}
