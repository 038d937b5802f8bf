package deploy

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// configuration mirrors the parts of Dapr 1.14's Configuration papo uses
// (dapr/dapr pkg/config/configuration.go ConfigurationSpec); strict
// decoding refuses a misspelt field.
type configuration struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Tracing *struct {
			SamplingRate string `json:"samplingRate"`
			Stdout       bool   `json:"stdout"`
		} `json:"tracing"`
		// daprd 1.14 reads spec.metric (GetMetricsSpec); spec.metrics
		// parses but is ignored.
		Metrics *struct {
			Enabled *bool `json:"enabled"`
			HTTP    *struct {
				IncreasedCardinality *bool `json:"increasedCardinality"`
			} `json:"http"`
		} `json:"metric"`
		Secrets *struct {
			Scopes []secretScope `json:"scopes"`
		} `json:"secrets"`
		API *struct {
			Allowed []apiRule `json:"allowed"`
			Denied  []apiRule `json:"denied,omitempty"`
		} `json:"api"`
		AccessControl *struct {
			DefaultAction string      `json:"defaultAction"`
			TrustDomain   string      `json:"trustDomain"`
			Policies      []aclPolicy `json:"policies"`
		} `json:"accessControl"`
	} `json:"spec"`
}

// secretScope limits what an app may read from one secret store.
type secretScope struct {
	StoreName      string   `json:"storeName"`
	DefaultAccess  string   `json:"defaultAccess"`
	AllowedSecrets []string `json:"allowedSecrets,omitempty"`
}

// apiRule names one API in spec.api.allowed (dapr/dapr pkg/config
// APIAccessRule).
type apiRule struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Protocol string `json:"protocol"`
}

func (r apiRule) String() string { return r.Protocol + " " + r.Name + " " + r.Version }

// wantAPIs is each sidecar's API allow-list: what its app calls, and
// nothing else (docs/ops.md, security model). Health is always served;
// auth names it because daprd opens the whole HTTP API when the list names
// no HTTP API at all.
var wantAPIs = map[string][]string{
	"gateway":      {"http invoke v1", "grpc subscribe v1alpha1"},
	"auth":         {"http healthz v1", "grpc state v1", "grpc publish v1", "grpc secrets v1"},
	"message":      {"http invoke v1", "grpc state v1", "grpc publish v1", "grpc subscribe v1alpha1"},
	"presence":     {"http invoke v1", "grpc state v1", "grpc publish v1", "grpc subscribe v1alpha1"},
	"notification": {"http invoke v1", "grpc state v1", "grpc publish v1", "grpc subscribe v1alpha1", "grpc bindings v1"},
	"ws":           {"http invoke v1", "grpc publish v1", "grpc subscribe v1alpha1"},
}

// checkAPIAllowList checks c's spec.api against wantAPIs[app].
func checkAPIAllowList(t *testing.T, app string, c configuration) {
	t.Helper()
	if c.Spec.API == nil || len(c.Spec.API.Allowed) == 0 {
		t.Errorf("%s: no API allow-list: the sidecar serves every Dapr API", app)
		return
	}
	var got []string
	for _, r := range c.Spec.API.Allowed {
		got = append(got, r.String())
	}
	want := slices.Clone(wantAPIs[app])
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: API allow-list %v, want %v", app, got, want)
	}
	if len(c.Spec.API.Denied) > 0 {
		t.Errorf("%s: a deny list %v: keep to the allow-list", app, c.Spec.API.Denied)
	}
}

// checkSecretScopes checks that only auth reads the secret store, and of
// it only the signing keys; on Kubernetes the built-in store stays shut.
func checkSecretScopes(t *testing.T, app string, c configuration, kubernetes bool) {
	t.Helper()
	scopes := map[string]secretScope{}
	if c.Spec.Secrets != nil {
		for _, s := range c.Spec.Secrets.Scopes {
			scopes[s.StoreName] = s
		}
	}
	if kubernetes {
		if k, ok := scopes["kubernetes"]; !ok || k.DefaultAccess != "deny" || len(k.AllowedSecrets) > 0 {
			t.Errorf("%s: the built-in kubernetes secret store is open: %+v", app, k)
		}
	}
	if app == "auth" {
		ss, ok := scopes["secretstore"]
		if !ok || ss.DefaultAccess != "deny" || !slices.Equal(ss.AllowedSecrets, []string{"auth-signing-keys"}) {
			t.Errorf("auth: secretstore scope %+v, want deny but auth-signing-keys", ss)
		}
	}
}

// aclPolicy is one app-id's entry in a Configuration's access control.
type aclPolicy struct {
	AppID         string `json:"appId"`
	DefaultAction string `json:"defaultAction"`
	TrustDomain   string `json:"trustDomain"`
	Namespace     string `json:"namespace"`
	Operations    []struct {
		Name     string   `json:"name"`
		HTTPVerb []string `json:"httpVerb"`
		Action   string   `json:"action"`
	} `json:"operations"`
}

func checkTracingAndMetrics(t *testing.T, c configuration) {
	t.Helper()
	if c.Kind != "Configuration" || c.APIVersion != "dapr.io/v1alpha1" {
		t.Errorf("kind %s %s", c.APIVersion, c.Kind)
	}
	if c.Spec.Tracing == nil || c.Spec.Tracing.SamplingRate == "" {
		t.Errorf("no tracing sampling rate")
	}
	if c.Spec.Metrics == nil || c.Spec.Metrics.Enabled == nil || !*c.Spec.Metrics.Enabled {
		t.Errorf("metrics are not enabled")
	}
}

// TestSelfHostedConfigurationsLimitEachSidecarsAPI: every app's sidecar
// outside Kubernetes runs with dapr/<app-id>.yaml, which allows only the
// APIs the app uses. The files differ in nothing else, and hold no access
// control: without Sentry's mTLS no caller has a SPIFFE id, so daprd
// applies the global default action to every call and a deny list would
// refuse all service invocation.
func TestSelfHostedConfigurationsLimitEachSidecarsAPI(t *testing.T) {
	var first *configuration
	for _, a := range apps {
		var c configuration
		readStrict(t, filepath.Join(root, "dapr", a.id+".yaml"), &c)
		checkTracingAndMetrics(t, c)
		if c.Metadata.Name != "papo-"+a.id {
			t.Errorf("dapr/%s.yaml: name %q, want papo-%s", a.id, c.Metadata.Name, a.id)
		}
		if c.Spec.AccessControl != nil {
			t.Errorf("dapr/%s.yaml has access control; it would deny every call without mTLS", a.id)
		}
		checkAPIAllowList(t, a.id, c)
		checkSecretScopes(t, a.id, c, false)
		if a.id != "auth" && c.Spec.Secrets != nil {
			t.Errorf("dapr/%s.yaml scopes secrets, though only auth has a secret store", a.id)
		}
		if first == nil {
			first = &c
			continue
		}
		if !reflect.DeepEqual(c.Spec.Tracing, first.Spec.Tracing) || !reflect.DeepEqual(c.Spec.Metrics, first.Spec.Metrics) {
			t.Errorf("dapr/%s.yaml: tracing or metrics differ from dapr/%s.yaml", a.id, apps[0].id)
		}
	}
}

// kubernetesConfigs builds dapr/kubernetes as k8s/base includes it and
// returns its Configurations by name.
func kubernetesConfigs(t *testing.T) map[string]configuration {
	t.Helper()
	out := map[string]configuration{}
	for _, r := range build(t, filepath.Join("dapr", "kubernetes")).Resources() {
		if r.GetKind() != "Configuration" {
			continue
		}
		var c configuration
		decode(t, r, &c)
		out[c.Metadata.Name] = c
	}
	return out
}

func TestKubernetesConfigurationsLimitEachSidecarsAPI(t *testing.T) {
	configs := kubernetesConfigs(t)
	if len(configs) != len(apps) {
		t.Errorf("%d Configurations, want one per app", len(configs))
	}
	for _, a := range apps {
		c, ok := configs["papo-"+a.id]
		if !ok {
			t.Errorf("no Configuration papo-%s", a.id)
			continue
		}
		checkTracingAndMetrics(t, c)
		checkAPIAllowList(t, a.id, c)
		checkSecretScopes(t, a.id, c, true)
		// Access control is enforced by the called app's sidecar with its
		// own Configuration: every app carries the same list.
		if !reflect.DeepEqual(c.Spec.AccessControl, configs["papo-gateway"].Spec.AccessControl) {
			t.Errorf("papo-%s: access control differs from papo-gateway's", a.id)
		}
	}
}

func TestKubernetesConfigurationLimitsWhoInvokesWhat(t *testing.T) {
	c, ok := kubernetesConfigs(t)["papo-message"]
	if !ok {
		t.Fatal("no Configuration papo-message")
	}
	acl := c.Spec.AccessControl
	if acl == nil || acl.DefaultAction != "deny" {
		t.Fatalf("access control must deny by default: %+v", acl)
	}
	allowed := map[string][]string{} // caller -> allowed operations
	for _, p := range acl.Policies {
		appByID(t, p.AppID)
		// daprd rejects the whole Configuration when a policy lacks either.
		if p.TrustDomain == "" || p.Namespace != namespace {
			t.Errorf("%s: trustDomain %q namespace %q, want both set, namespace %q", p.AppID, p.TrustDomain, p.Namespace, namespace)
		}
		if p.DefaultAction != "deny" {
			t.Errorf("%s: defaultAction %q, want deny", p.AppID, p.DefaultAction)
		}
		for _, op := range p.Operations {
			if !strings.HasPrefix(op.Name, "/api/v1/") && !strings.HasPrefix(op.Name, "/internal/v1/") &&
				(op.Name != "/readyz" || p.AppID != "gateway") {
				t.Errorf("%s: operation %s is outside /api/v1 and /internal/v1", p.AppID, op.Name)
			}
			if op.Action != "allow" || len(op.HTTPVerb) == 0 {
				t.Errorf("%s: operation %s: action %q verbs %v", p.AppID, op.Name, op.Action, op.HTTPVerb)
			}
			for _, v := range op.HTTPVerb {
				if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, v) {
					t.Errorf("%s: operation %s: verb %q", p.AppID, op.Name, v)
				}
			}
			allowed[p.AppID] = append(allowed[p.AppID], op.Name)
		}
	}
	if !slices.Contains(allowed["gateway"], "/api/v1/**") {
		t.Errorf("gateway may not forward /api/v1/**: %v", allowed["gateway"])
	}
	for _, op := range allowed["gateway"] {
		if strings.HasPrefix(op, "/internal/") && op != "/internal/v1/revocations" {
			t.Errorf("gateway may call internal route %s", op)
		}
	}
	for _, op := range []string{"/internal/v1/sessions/*", "/internal/v1/users/*/rooms", "/internal/v1/presence/*"} {
		if !slices.Contains(allowed["ws"], op) {
			t.Errorf("ws may not call %s", op)
		}
	}
	if _, ok := allowed["auth"]; ok {
		t.Errorf("auth invokes nothing; it has a policy: %v", allowed["auth"])
	}
	// Every call a service makes through Dapr must be allowed: the shared
	// Configuration applies at every callee.
	verifiers := []string{"gateway", "ws", "presence", "message", "notification"}
	calls := map[string][]string{
		"ws": {"GET /api/v1/auth/jwks", "GET /internal/v1/sessions/s1", "GET /internal/v1/users/u1/rooms",
			"GET /internal/v1/rooms/r1/events", "GET /internal/v1/rooms/r1/members", "POST /internal/v1/rooms/r1/read",
			"POST /internal/v1/submissions",
			"POST /internal/v1/presence/connect", "POST /internal/v1/presence/disconnect", "POST /internal/v1/presence/heartbeat"},
		"presence":     {"GET /api/v1/auth/jwks", "GET /internal/v1/users/u1/rooms", "GET /internal/v1/rooms/r1/members"},
		"message":      {"GET /api/v1/auth/jwks", "GET /internal/v1/users/u1"},
		"notification": {"GET /api/v1/auth/jwks", "GET /internal/v1/rooms/r1/members", "GET /internal/v1/presence", "GET /internal/v1/users/u1"},
		"gateway":      {"GET /api/v1/rooms/r1/events", "POST /api/v1/rooms", "PUT /api/v1/rooms/r1/notifications", "DELETE /api/v1/devices/d1", "GET /readyz"},
	}
	for _, v := range verifiers { // every verifier reads the revocations in force when it starts
		calls[v] = append(calls[v], "GET /internal/v1/revocations")
	}
	for caller, cs := range calls {
		for _, call := range cs {
			verb, path, _ := strings.Cut(call, " ")
			if !aclAllows(acl.Policies, caller, verb, path) {
				t.Errorf("%s may not call %s", caller, call)
			}
		}
	}
	for _, denied := range []string{"gateway GET /internal/v1/users/u1", "gateway POST /readyz", "ws GET /readyz", "message GET /internal/v1/sessions/s1", "notification GET /internal/v1/users/u1/rooms"} {
		caller, call, _ := strings.Cut(denied, " ")
		verb, path, _ := strings.Cut(call, " ")
		if aclAllows(acl.Policies, caller, verb, path) {
			t.Errorf("%s may call %s", caller, call)
		}
	}
}

// aclAllows reports whether caller may invoke verb path under policies, as
// daprd matches operations: "*" is one path segment, "**" any number.
func aclAllows(policies []aclPolicy, caller, verb, path string) bool {
	for _, p := range policies {
		if p.AppID != caller {
			continue
		}
		for _, op := range p.Operations {
			if op.Action == "allow" && slices.Contains(op.HTTPVerb, verb) && opMatches(strings.Split(op.Name, "/"), strings.Split(path, "/")) {
				return true
			}
		}
	}
	return false
}

func opMatches(pattern, path []string) bool {
	for i, seg := range pattern {
		if seg == "**" {
			return true
		}
		if i >= len(path) || (seg != "*" && seg != path[i]) {
			return false
		}
	}
	return len(pattern) == len(path)
}
