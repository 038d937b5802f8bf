package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// root is the repository root, where the deployment descriptions live.
const root = ".."

// app is what every deployment description must agree on about one service.
type app struct {
	id   string
	port int
	// replicas is how many instances Kubernetes runs; ws runs two
	// everywhere a description can express it.
	replicas int
}

// apps are papo's six services. The ports are fixed so that every
// description (dapr.yaml, docker-compose.yml, k8s/, tye.yaml) names the same
// ones; this table is the reference the tests check them against.
var apps = []app{
	{id: "gateway", port: 8080, replicas: 1},
	{id: "auth", port: 8081, replicas: 1},
	{id: "message", port: 8082, replicas: 1},
	{id: "presence", port: 8083, replicas: 1},
	{id: "notification", port: 8084, replicas: 1},
	{id: "ws", port: 8085, replicas: 2},
}

func appByID(t *testing.T, id string) app {
	t.Helper()
	for _, a := range apps {
		if a.id == id {
			return a
		}
	}
	t.Fatalf("unknown app-id %q", id)
	return app{}
}

// readStrict decodes one YAML document into v, refusing unknown fields, so
// a misspelt key fails the test instead of being ignored.
func readStrict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// documents splits a multi-document YAML file.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 && !onlyComments(doc) {
			docs = append(docs, doc)
		}
	}
}

func onlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

func mustExist(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, path)); err != nil {
		t.Errorf("%s %s: %v", what, path, err)
	}
}
