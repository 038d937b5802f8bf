package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// component mirrors the Dapr 1.14 Component resource
// (dapr/dapr pkg/apis/components/v1alpha1); strict decoding makes any
// other field an error.
type component struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Type         string         `json:"type"`
		Version      string         `json:"version"`
		IgnoreErrors bool           `json:"ignoreErrors,omitempty"`
		InitTimeout  string         `json:"initTimeout,omitempty"`
		Metadata     []metadataItem `json:"metadata"`
	} `json:"spec"`
	Auth *struct {
		SecretStore string `json:"secretStore"`
	} `json:"auth,omitempty"`
	Scopes []string `json:"scopes"`
}

type metadataItem struct {
	Name         string `json:"name"`
	Value        any    `json:"value,omitempty"`
	EnvRef       string `json:"envRef,omitempty"`
	SecretKeyRef *struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	} `json:"secretKeyRef,omitempty"`
}

func (c component) meta(name string) (metadataItem, bool) {
	for _, m := range c.Spec.Metadata {
		if m.Name == name {
			return m, true
		}
	}
	return metadataItem{}, false
}

// value is a metadata item's plain value ("" when absent or not plain).
func (c component) value(name string) string {
	m, ok := c.meta(name)
	if !ok || m.Value == nil {
		return ""
	}
	return fmt.Sprint(m.Value)
}

// componentSet is one folder's components by name.
type componentSet map[string]component

// wantComponents are the names every profile defines, with the apps each is
// scoped to (docs/development.md). pubsub reaches the apps that publish or
// consume on it (not the gateway); fanout the apps that follow a topic
// per replica (every token verifier watches sessions.revoked; not auth).
var wantComponents = map[string][]string{
	"pubsub":            {"auth", "message", "notification", "presence", "ws"},
	"fanout":            {"gateway", "message", "notification", "presence", "ws"},
	"authstore":         {"auth"},
	"messagestore":      {"message"},
	"presencestore":     {"presence"},
	"notificationstore": {"notification"},
	"secretstore":       {"auth"},
	"push":              {"notification"},
}

// profileDirs are every folder of components a sidecar may be given:
// components/<profile>/ and its compose/ and kubernetes/ variants.
func profileDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	entries, err := os.ReadDir(filepath.Join(root, "components"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join("components", e.Name())
		dirs = append(dirs, dir)
		for _, variant := range []string{"compose", "kubernetes"} {
			if _, err := os.Stat(filepath.Join(root, dir, variant)); err == nil {
				dirs = append(dirs, filepath.Join(dir, variant))
			}
		}
	}
	if len(dirs) < 5 {
		t.Fatalf("found only %v under components/", dirs)
	}
	return dirs
}

// loadComponents reads every Component in dir (non-recursive, like daprd),
// skipping other kinds (Resiliency, Kustomization, Job).
func loadComponents(t *testing.T, dir string) componentSet {
	t.Helper()
	set := componentSet{}
	files, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, doc := range documents(t, f) {
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if head.Kind != "Component" {
				continue
			}
			var c component
			if err := yaml.UnmarshalStrict(doc, &c); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if c.APIVersion != "dapr.io/v1alpha1" {
				t.Errorf("%s: component %s has apiVersion %q", f, c.Metadata.Name, c.APIVersion)
			}
			if _, dup := set[c.Metadata.Name]; dup {
				t.Errorf("%s: component %s defined twice in %s", f, c.Metadata.Name, dir)
			}
			set[c.Metadata.Name] = c
		}
	}
	return set
}

func TestEveryProfileDefinesTheSameScopedComponents(t *testing.T) {
	for _, dir := range profileDirs(t) {
		t.Run(dir, func(t *testing.T) {
			set := loadComponents(t, dir)
			var got []string
			for name := range set {
				got = append(got, name)
			}
			sort.Strings(got)
			var want []string
			for name := range wantComponents {
				want = append(want, name)
			}
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("components %v, want %v", got, want)
			}
			for name, c := range set {
				scopes := slices.Clone(c.Scopes)
				sort.Strings(scopes)
				if !slices.Equal(scopes, wantComponents[name]) {
					t.Errorf("%s scoped to %v, want %v", name, scopes, wantComponents[name])
				}
				if c.Spec.Version == "" {
					t.Errorf("%s has no spec.version", name)
				}
			}
			if got, want := set["push"].Spec.Type, "bindings.http"; got != want {
				t.Errorf("push is %s, want %s", got, want)
			}
			if !strings.HasPrefix(set["secretstore"].Spec.Type, "secretstores.") {
				t.Errorf("secretstore is %s", set["secretstore"].Spec.Type)
			}
			for _, store := range []string{"authstore", "messagestore", "presencestore", "notificationstore"} {
				if !strings.HasPrefix(set[store].Spec.Type, "state.") {
					t.Errorf("%s is %s", store, set[store].Spec.Type)
				}
			}
			if set["pubsub"].Spec.Type != set["fanout"].Spec.Type {
				t.Errorf("pubsub is %s but fanout is %s: both must reach the same broker",
					set["pubsub"].Spec.Type, set["fanout"].Spec.Type)
			}
		})
	}
}

// TestFanoutGivesEveryReplicaItsOwnConsumer checks the per-broker settings
// of DESIGN.md's fan-out table, and that pubsub stays a competing consumer.
func TestFanoutGivesEveryReplicaItsOwnConsumer(t *testing.T) {
	for _, dir := range profileDirs(t) {
		t.Run(dir, func(t *testing.T) {
			set := loadComponents(t, dir)
			fanout, pubsub := set["fanout"], set["pubsub"]
			want := func(c component, name, value string) {
				t.Helper()
				if got := c.value(name); got != value {
					t.Errorf("%s %s = %q, want %q", c.Metadata.Name, name, got, value)
				}
			}
			absent := func(c component, name string) {
				t.Helper()
				if _, ok := c.meta(name); ok {
					t.Errorf("%s sets %s; it must not", c.Metadata.Name, name)
				}
			}
			switch fanout.Spec.Type {
			case "pubsub.jetstream":
				absent(fanout, "durableName")
				absent(fanout, "queueGroupName")
				want(fanout, "deliverPolicy", "new")
				want(pubsub, "durableName", "{appID}")
				want(pubsub, "queueGroupName", "{appID}")
			case "pubsub.redis":
				want(fanout, "consumerID", "{uuid}")
				if fanout.value("maxLenApprox") == "" {
					t.Errorf("fanout has no maxLenApprox: a new group replays the whole stream")
				}
				absent(pubsub, "consumerID")
			case "pubsub.rabbitmq":
				want(fanout, "consumerID", "{uuid}")
				// Both components declare the same exchange (named by the
				// topic); RabbitMQ refuses a second declaration whose
				// durable or auto-delete flags differ (PRECONDITION_FAILED,
				// seen with daprd 1.14.0), so fanout repeats pubsub's.
				want(fanout, "durable", "true")
				want(fanout, "deletedWhenUnused", "false")
				want(pubsub, "durable", "true")
				want(pubsub, "deletedWhenUnused", "false")
				if fanout.value("maxLen") == "" {
					t.Errorf("fanout has no maxLen: a stopped replica's queue would grow without bound")
				}
				absent(pubsub, "consumerID")
			case "pubsub.kafka":
				want(fanout, "consumerGroup", "{uuid}")
				want(fanout, "initialOffset", "newest")
				absent(pubsub, "consumerGroup")
			case "pubsub.mqtt3", "pubsub.mqtt":
				want(fanout, "consumerID", "{uuid}")
				want(fanout, "cleanSession", "true")
			default:
				t.Fatalf("fanout type %s has no rule here: add its settings from DESIGN.md", fanout.Spec.Type)
			}
			for name, c := range set {
				for _, m := range c.Spec.Metadata {
					if name != "fanout" && strings.Contains(fmt.Sprint(m.Value), "{uuid}") {
						t.Errorf("%s %s uses {uuid}: only fanout is per replica", name, m.Name)
					}
				}
			}
		})
	}
}

// topicAccess is who may publish and who may subscribe to each topic of
// each pub/sub component (docs/ops.md, security model). An app missing
// from a map may do neither.
var topicAccess = map[string]struct{ publish, subscribe map[string][]string }{
	"pubsub": {
		publish: map[string][]string{
			"auth":         {"sessions.revoked"},
			"ws":           {"messages.submitted"},
			"message":      {"messages.submitted", "room.events", "messages.deadletter"},
			"presence":     {"room.signals"},
			"notification": {"notifications.deadletter", "devices.changed"},
		},
		subscribe: map[string][]string{
			"message":      {"messages.submitted"},
			"notification": {"room.events"},
		},
	},
	"fanout": {
		publish: map[string][]string{
			"ws": {"room.signals"},
		},
		subscribe: map[string][]string{
			"gateway":      {"sessions.revoked"},
			"ws":           {"room.events", "room.signals", "sessions.revoked"},
			"message":      {"sessions.revoked"},
			"presence":     {"sessions.revoked"},
			"notification": {"sessions.revoked", "devices.changed"},
		},
	},
}

// parseScopes reads a publishingScopes / subscriptionScopes value as
// daprd 1.14 does (pkg/scopes): "app=t1,t2;app2=" (spaces dropped).
func parseScopes(v string) map[string][]string {
	out := map[string][]string{}
	for _, entry := range strings.Split(strings.ReplaceAll(v, " ", ""), ";") {
		app, topics, ok := strings.Cut(entry, "=")
		if !ok {
			continue
		}
		out[app] = nil
		for _, t := range strings.Split(topics, ",") {
			if t != "" {
				out[app] = append(out[app], t)
			}
		}
	}
	return out
}

// TestPubSubTopicsAreScopedToTheirPublishersAndSubscribers: every topic is
// protected (an app not named in a scope may not touch it), only papo's
// topics are allowed, and each app may publish and subscribe to exactly
// the topics of topicAccess. daprd lets an app that a scope does not name
// use every unprotected topic, so each scoped app is named.
func TestPubSubTopicsAreScopedToTheirPublishersAndSubscribers(t *testing.T) {
	for _, dir := range profileDirs(t) {
		t.Run(dir, func(t *testing.T) {
			set := loadComponents(t, dir)
			for name, want := range topicAccess {
				c := set[name]
				var topics []string
				for _, m := range []map[string][]string{want.publish, want.subscribe} {
					for _, ts := range m {
						for _, topic := range ts {
							if !slices.Contains(topics, topic) {
								topics = append(topics, topic)
							}
						}
					}
				}
				sort.Strings(topics)
				for _, key := range []string{"allowedTopics", "protectedTopics"} {
					got := strings.Split(c.value(key), ",")
					sort.Strings(got)
					if !slices.Equal(got, topics) {
						t.Errorf("%s %s = %v, want %v", name, key, got, topics)
					}
				}
				for key, wantScopes := range map[string]map[string][]string{"publishingScopes": want.publish, "subscriptionScopes": want.subscribe} {
					got := parseScopes(c.value(key))
					for _, app := range c.Scopes {
						g, w := slices.Clone(got[app]), slices.Clone(wantScopes[app])
						sort.Strings(g)
						sort.Strings(w)
						if _, named := got[app]; !named || !slices.Equal(g, w) {
							t.Errorf("%s %s for %s: %v (named %v), want %v", name, key, app, g, named, w)
						}
					}
					for app := range got {
						if !slices.Contains(c.Scopes, app) {
							t.Errorf("%s %s names %s, which the component is not scoped to", name, key, app)
						}
					}
				}
			}
		})
	}
}

// TestKubernetesComponentsMatchTheirProfile checks that each
// components/<profile>/kubernetes/ differs from components/<profile>/ only
// in addresses and secrets, and keeps passwords out of plain values.
func TestKubernetesComponentsMatchTheirProfile(t *testing.T) {
	for _, dir := range profileDirs(t) {
		if filepath.Base(dir) != "kubernetes" {
			continue
		}
		t.Run(dir, func(t *testing.T) {
			k8s := loadComponents(t, dir)
			base := loadComponents(t, filepath.Dir(dir))
			for name, c := range k8s {
				b := base[name]
				if name == "secretstore" {
					if c.Spec.Type != "secretstores.kubernetes" {
						t.Errorf("secretstore is %s on Kubernetes", c.Spec.Type)
					}
					continue
				}
				if c.Spec.Type != b.Spec.Type || c.Spec.Version != b.Spec.Version {
					t.Errorf("%s is %s/%s, the profile has %s/%s", name, c.Spec.Type, c.Spec.Version, b.Spec.Type, b.Spec.Version)
				}
				for _, m := range c.Spec.Metadata {
					if sensitive(m.Name) && m.SecretKeyRef == nil {
						t.Errorf("%s %s is not a secretKeyRef", name, m.Name)
					}
					if m.SecretKeyRef != nil && (c.Auth == nil || c.Auth.SecretStore != "kubernetes") {
						t.Errorf("%s reads secrets but auth.secretStore is not kubernetes", name)
					}
					if strings.Contains(fmt.Sprint(m.Value), "${") {
						t.Errorf("%s %s keeps a launcher placeholder: %v", name, m.Name, m.Value)
					}
					// Everything that is neither an address nor a secret is
					// the profile's own setting.
					if m.SecretKeyRef == nil && !address(m.Name) {
						if got, want := c.value(m.Name), b.value(m.Name); got != want {
							t.Errorf("%s %s = %q, the profile has %q", name, m.Name, got, want)
						}
					}
				}
			}
			// Resiliency goes with the components.
			a, err := os.ReadFile(filepath.Join(root, dir, "resiliency.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(root, filepath.Dir(dir), "resiliency.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if string(a) != string(b) {
				t.Errorf("kubernetes/resiliency.yaml differs from the profile's")
			}
		})
	}
}

func sensitive(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "password") || n == "connectionstring" || n == "username"
}

func address(name string) bool {
	switch name {
	case "natsURL", "brokers", "host", "redisHost", "url", "connectionString":
		return true
	}
	return false
}

// resiliency mirrors the Dapr 1.14 Resiliency resource
// (dapr/dapr pkg/apis/resiliency/v1alpha1) plus initialInterval, which
// daprd reads from the retry policy (dapr/kit retry.Config).
type resiliency struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Policies struct {
			Timeouts map[string]string `json:"timeouts"`
			Retries  map[string]struct {
				Policy          string `json:"policy"`
				Duration        string `json:"duration,omitempty"`
				InitialInterval string `json:"initialInterval,omitempty"`
				MaxInterval     string `json:"maxInterval,omitempty"`
				MaxRetries      *int   `json:"maxRetries,omitempty"`
			} `json:"retries"`
			CircuitBreakers map[string]struct {
				MaxRequests int    `json:"maxRequests"`
				Interval    string `json:"interval"`
				Timeout     string `json:"timeout"`
				Trip        string `json:"trip"`
			} `json:"circuitBreakers"`
		} `json:"policies"`
		Targets struct {
			Apps       map[string]policyNames `json:"apps"`
			Components map[string]struct {
				Inbound  *policyNames `json:"inbound,omitempty"`
				Outbound *policyNames `json:"outbound,omitempty"`
			} `json:"components"`
		} `json:"targets"`
	} `json:"spec"`
	Scopes []string `json:"scopes,omitempty"`
}

type policyNames struct {
	Timeout        string `json:"timeout,omitempty"`
	Retry          string `json:"retry,omitempty"`
	CircuitBreaker string `json:"circuitBreaker,omitempty"`
}

func TestEveryProfileHasResiliency(t *testing.T) {
	for _, dir := range profileDirs(t) {
		t.Run(dir, func(t *testing.T) {
			var r resiliency
			readStrict(t, filepath.Join(root, dir, "resiliency.yaml"), &r)
			if r.Kind != "Resiliency" || r.APIVersion != "dapr.io/v1alpha1" {
				t.Fatalf("kind %s %s", r.APIVersion, r.Kind)
			}
			p := r.Spec.Policies
			check := func(where string, n policyNames) {
				t.Helper()
				if n.Timeout != "" {
					if _, ok := p.Timeouts[n.Timeout]; !ok {
						t.Errorf("%s: timeout %q is not defined", where, n.Timeout)
					}
				}
				if n.Retry != "" {
					rp, ok := p.Retries[n.Retry]
					if !ok {
						t.Errorf("%s: retry %q is not defined", where, n.Retry)
					} else if rp.Policy != "exponential" {
						t.Errorf("%s: retry %q is %s, want exponential backoff", where, n.Retry, rp.Policy)
					}
				}
				if n.CircuitBreaker != "" {
					if _, ok := p.CircuitBreakers[n.CircuitBreaker]; !ok {
						t.Errorf("%s: circuit breaker %q is not defined", where, n.CircuitBreaker)
					}
				}
			}
			// daprd 1.14 counts a callee's 4xx answers as breaker failures
			// (per app and method path): a breaker on service invocation
			// would let refused requests take a route down for everyone.
			for _, a := range apps {
				n, ok := r.Spec.Targets.Apps[a.id]
				if !ok || n.Timeout == "" {
					t.Errorf("app %s: want a timeout on service invocation, got %+v", a.id, n)
				}
				if n.CircuitBreaker != "" || n.Retry != "" {
					t.Errorf("app %s: service invocation has circuit breaker %q, retry %q; want neither", a.id, n.CircuitBreaker, n.Retry)
				}
				check("app "+a.id, n)
			}
			for name, c := range r.Spec.Targets.Components {
				for _, n := range []*policyNames{c.Inbound, c.Outbound} {
					// The push sender reads provider statuses itself
					// (errorIfNot2XX false): only transport failures reach
					// the breaker there.
					if n != nil && n.CircuitBreaker != "" && name != "push" {
						t.Errorf("component %s has circuit breaker %q: only push, which sees transport failures alone, may", name, n.CircuitBreaker)
					}
				}
			}
			for _, name := range []string{"pubsub", "fanout"} {
				c := r.Spec.Targets.Components[name]
				if c.Inbound == nil || c.Inbound.Retry == "" || c.Outbound == nil || c.Outbound.Retry == "" {
					t.Errorf("%s: want retries on publish and on delivery", name)
					continue
				}
				check(name+" inbound", *c.Inbound)
				check(name+" outbound", *c.Outbound)
			}
			push := r.Spec.Targets.Components["push"]
			if push.Outbound == nil || push.Outbound.Retry == "" || push.Outbound.Timeout == "" {
				t.Errorf("push: want a timeout and retries")
			} else {
				check("push", *push.Outbound)
			}
			for name, c := range r.Spec.Targets.Components {
				if _, ok := wantComponents[name]; !ok {
					t.Errorf("resiliency targets unknown component %s", name)
				}
				if c.Outbound != nil {
					check(name, *c.Outbound)
				}
			}
		})
	}
}

// TestResiliencyIsTheSameEverywhere keeps one policy set: the profiles
// differ in infrastructure, not in how failures are handled.
func TestResiliencyIsTheSameEverywhere(t *testing.T) {
	var first resiliency
	var firstDir string
	for _, dir := range profileDirs(t) {
		var r resiliency
		readStrict(t, filepath.Join(root, dir, "resiliency.yaml"), &r)
		if firstDir == "" {
			first, firstDir = r, dir
			continue
		}
		if !reflect.DeepEqual(r, first) {
			t.Errorf("%s/resiliency.yaml differs from %s/resiliency.yaml", dir, firstDir)
		}
	}
}
