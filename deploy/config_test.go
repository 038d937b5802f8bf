package deploy

import (
	"path/filepath"
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
			Scopes []struct {
				StoreName     string `json:"storeName"`
				DefaultAccess string `json:"defaultAccess"`
			} `json:"scopes"`
		} `json:"secrets"`
		AccessControl *struct {
			DefaultAction string      `json:"defaultAction"`
			TrustDomain   string      `json:"trustDomain"`
			Policies      []aclPolicy `json:"policies"`
		} `json:"accessControl"`
	} `json:"spec"`
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

// TestSelfHostedConfigurationHasNoAccessControl: without Sentry's mTLS no
// caller has a SPIFFE id, so daprd applies the global default action to
// every call; a deny list would refuse all service invocation.
func TestSelfHostedConfigurationHasNoAccessControl(t *testing.T) {
	var c configuration
	readStrict(t, filepath.Join(root, "dapr", "config.yaml"), &c)
	checkTracingAndMetrics(t, c)
	if c.Spec.AccessControl != nil {
		t.Errorf("dapr/config.yaml has access control; it would deny every call without mTLS")
	}
}

func TestKubernetesConfigurationLimitsWhoInvokesWhat(t *testing.T) {
	var c configuration
	readStrict(t, filepath.Join(root, "dapr", "kubernetes", "config.yaml"), &c)
	checkTracingAndMetrics(t, c)
	if c.Metadata.Name != "papo" {
		t.Errorf("name %q: the Deployments' dapr.io/config says papo", c.Metadata.Name)
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
			if !strings.HasPrefix(op.Name, "/api/v1/") && !strings.HasPrefix(op.Name, "/internal/v1/") {
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
			"POST /internal/v1/presence/connect", "POST /internal/v1/presence/disconnect", "POST /internal/v1/presence/heartbeat"},
		"presence":     {"GET /api/v1/auth/jwks", "GET /internal/v1/users/u1/rooms", "GET /internal/v1/rooms/r1/members"},
		"message":      {"GET /api/v1/auth/jwks", "GET /internal/v1/users/u1"},
		"notification": {"GET /api/v1/auth/jwks", "GET /internal/v1/rooms/r1/members", "GET /internal/v1/presence", "GET /internal/v1/users/u1"},
		"gateway":      {"GET /api/v1/rooms/r1/events", "POST /api/v1/rooms", "PUT /api/v1/rooms/r1/notifications", "DELETE /api/v1/devices/d1"},
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
	for _, denied := range []string{"gateway GET /internal/v1/users/u1", "message GET /internal/v1/sessions/s1", "notification GET /internal/v1/users/u1/rooms"} {
		caller, call, _ := strings.Cut(denied, " ")
		verb, path, _ := strings.Cut(call, " ")
		if aclAllows(acl.Policies, caller, verb, path) {
			t.Errorf("%s may call %s", caller, call)
		}
	}
	if c.Spec.Secrets == nil || len(c.Spec.Secrets.Scopes) == 0 || c.Spec.Secrets.Scopes[0].StoreName != "kubernetes" || c.Spec.Secrets.Scopes[0].DefaultAccess != "deny" {
		t.Errorf("the built-in kubernetes secret store is open to the apps")
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
