package deploy

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestKubernetesIngressTerminatesTLS: on Kubernetes TLS ends at the
// ingress (docs/deploy.md, "Ingress and TLS"): every Ingress of every
// overlay has a tls section with a Secret for each host its rules name,
// redirects plain HTTP (ws:// included) to HTTPS, and the ws replicas
// accept the browser's https:// origin of those hosts. The pods behind it
// speak plain HTTP, so the gateway has no certificate there.
func TestKubernetesIngressTerminatesTLS(t *testing.T) {
	for _, overlay := range overlays(t) {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, filepath.Join("k8s", "overlays", overlay))
			var ingresses []networkingv1.Ingress
			var ws, gateway appsv1.Deployment
			for _, r := range m.Resources() {
				switch r.GetKind() {
				case "Ingress":
					var in networkingv1.Ingress
					decode(t, r, &in)
					ingresses = append(ingresses, in)
				case "Deployment":
					var d appsv1.Deployment
					decode(t, r, &d)
					switch d.Name {
					case "ws":
						ws = d
					case "gateway":
						gateway = d
					}
				}
			}
			if len(ingresses) == 0 {
				t.Fatal("no Ingress")
			}
			hosts := map[string]bool{}
			for _, in := range ingresses {
				tlsHosts := map[string]bool{}
				for _, tls := range in.Spec.TLS {
					if tls.SecretName == "" {
						t.Errorf("Ingress %s: a tls entry without a Secret", in.Name)
					}
					for _, h := range tls.Hosts {
						tlsHosts[h] = true
					}
				}
				if len(tlsHosts) == 0 {
					t.Errorf("Ingress %s has no tls hosts: it would serve plain HTTP", in.Name)
				}
				for _, rule := range in.Spec.Rules {
					if rule.Host == "" || !tlsHosts[rule.Host] {
						t.Errorf("Ingress %s routes host %q, which its tls section does not cover", in.Name, rule.Host)
					}
					hosts[rule.Host] = true
				}
				if got := in.Annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"]; got != "true" {
					t.Errorf("Ingress %s: force-ssl-redirect %q, want \"true\"", in.Name, got)
				}
			}
			origins := strings.Split(envValue(ws.Spec.Template.Spec.Containers[0], "WS_ALLOWED_ORIGINS"), ",")
			for h := range hosts {
				if !slices.Contains(origins, "https://"+h) {
					t.Errorf("WS_ALLOWED_ORIGINS %v lacks https://%s: browsers on the ingress could not open a socket", origins, h)
				}
			}
			for _, c := range gateway.Spec.Template.Spec.Containers {
				if envValue(c, "GATEWAY_TLS_CERT") != "" {
					t.Errorf("the gateway has GATEWAY_TLS_CERT behind an ingress that terminates TLS")
				}
			}
		})
	}
}
