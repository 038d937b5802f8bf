package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bindingsLoader "github.com/dapr/dapr/pkg/components/bindings"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
	secretstoresLoader "github.com/dapr/dapr/pkg/components/secretstores"
	stateLoader "github.com/dapr/dapr/pkg/components/state"
	wfbeLoader "github.com/dapr/dapr/pkg/components/wfbackend"
	"gopkg.in/yaml.v3"
)

// supported reports whether this daprd's registries make the component
// type ("state.mysql") at version ("v1"; empty takes the default).
func supported(typ, version string) error {
	kind, _, _ := strings.Cut(typ, ".")
	var err error
	switch kind {
	case "bindings":
		_, err = bindingsLoader.DefaultRegistry.CreateOutputBinding(typ, version, "check")
	case "nameresolution":
		_, err = nrLoader.DefaultRegistry.Create(strings.TrimPrefix(typ, "nameresolution."), version, "check")
	case "pubsub":
		_, err = pubsubLoader.DefaultRegistry.Create(typ, version, "check")
	case "secretstores":
		_, err = secretstoresLoader.DefaultRegistry.Create(typ, version, "check")
	case "state":
		_, err = stateLoader.DefaultRegistry.Create(typ, version, "check")
	case "workflowbackend":
		_, err = wfbeLoader.DefaultRegistry.Create(typ, version, "check")
	default:
		err = fmt.Errorf("unknown component kind %q", kind)
	}
	return err
}

// TestRegisteredListIsTrue: every type "daprd papo-components" lists is
// one the registries make.
func TestRegisteredListIsTrue(t *testing.T) {
	for _, r := range registered {
		typ, version, _ := strings.Cut(r, "/")
		if err := supported(typ, version); err != nil {
			t.Errorf("%s is listed but not registered: %v", r, err)
		}
	}
}

// TestTheCheckRejectsAnUnregisteredType: a stable upstream component papo
// does not use is absent, and the check says so.
func TestTheCheckRejectsAnUnregisteredType(t *testing.T) {
	for _, typ := range []string{"state.cassandra", "pubsub.azure.servicebus.topics", "bindings.aws.s3", "state.postgresql/v3"} {
		typ, version, _ := strings.Cut(typ, "/")
		if err := supported(typ, version); err == nil {
			t.Errorf("%s %s is accepted, want an error", typ, version)
		}
	}
}

// TestEveryComponentFileIsRegistered: every Component in the repository's
// components/, k8s/ and dapr/ trees (and every Configuration's name
// resolver) names a type and version this daprd registers, so that no
// profile or deploy description needs a component the slim build lacks.
func TestEveryComponentFileIsRegistered(t *testing.T) {
	root := filepath.Join("..", "..")
	checked := 0
	for _, dir := range []string{"components", "k8s", "dapr"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				return err
			}
			uses, err := componentTypes(path)
			if err != nil {
				return err
			}
			for _, u := range uses {
				checked++
				if err := supported(u.typ, u.version); err != nil {
					t.Errorf("%s: %s names %s %s, which this daprd does not register (tools/daprd/components.go): %v",
						path, u.name, u.typ, u.version, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The launcher's own Configuration (launcher/plan.go) names the SQLite
	// resolver.
	if err := supported("nameresolution.sqlite", "v1"); err != nil {
		t.Error(err)
	}
	if checked < 50 {
		t.Fatalf("only %d component types found under %s; the walk is broken", checked, root)
	}
}

type use struct{ name, typ, version string }

// componentTypes reads every YAML document of path and returns the types
// its Components and Configurations name.
func componentTypes(path string) ([]use, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []use
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Type           string `yaml:"type"`
				Version        string `yaml:"version"`
				NameResolution struct {
					Component string `yaml:"component"`
					Version   string `yaml:"version"`
				} `yaml:"nameResolution"`
			} `yaml:"spec"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			// Kustomize patches and templated files are not all plain
			// YAML documents of one shape; a file that is not is skipped
			// only when it names no Component.
			if bytes.Contains(b, []byte("kind: Component")) {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return out, nil
		}
		if !strings.HasPrefix(doc.APIVersion, "dapr.io/") {
			continue // kustomize's own kinds (kind: Component among them)
		}
		switch doc.Kind {
		case "Component":
			out = append(out, use{doc.Metadata.Name, doc.Spec.Type, doc.Spec.Version})
		case "Configuration":
			if c := doc.Spec.NameResolution.Component; c != "" {
				out = append(out, use{doc.Metadata.Name, "nameresolution." + c, doc.Spec.NameResolution.Version})
			}
		}
	}
}
