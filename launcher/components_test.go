package launcher

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSQLitePathsAreReadFromEveryComponentDocument: every state.sqlite
// Component of the folder names its file (less "file:" and the query),
// in any document of a file; in-memory databases, other kinds and other
// files are passed over.
func TestSQLitePathsAreReadFromEveryComponentDocument(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"a.yaml": `apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: one}
spec:
  type: state.sqlite
  metadata:
  - {name: connectionString, value: "file:/data/one.db?_pragma=busy_timeout(5000)"}
---
kind: Component
metadata: {name: mem}
spec:
  type: state.sqlite
  metadata:
  - {name: connectionString, value: ":memory:"}
`,
		"b.yml": `kind: Component
spec:
  type: state.sqlite
  metadata:
  - {name: connectionString, value: /data/two.db}
`,
		"resiliency.yaml": `kind: Resiliency
spec:
  type: state.sqlite
  metadata:
  - {name: connectionString, value: /data/not-a-component.db}
`,
		"c.yaml": `kind: Component
spec:
  type: state.redis
  metadata:
  - {name: redisHost, value: localhost:6379}
`,
		"notes.txt": "kind: Component\nspec: {type: state.sqlite}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := sqliteComponentPaths(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/data/one.db", "/data/two.db"}; !slices.Equal(paths, want) {
		t.Fatalf("paths %q, want %q", paths, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "z.yaml"), []byte("kind: [unclosed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readComponents(dir); err == nil {
		t.Fatal("a file that is not YAML accepted")
	}
}
