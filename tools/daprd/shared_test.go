package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// moduleVersions lists, for the packages patterns name and everything
// they import, the version of each module that provides one, as "go list
// -deps" resolves it in dir with env.
func moduleVersions(t *testing.T, dir string, env []string, patterns ...string) map[string]string {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderrOf(err))
	}
	mods := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if path, version, ok := strings.Cut(line, " "); ok {
			mods[path] = version
		}
	}
	return mods
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// On a new machine make run builds this daprd beside the launcher and the
// services; a package both import compiles once only when its module, and
// every module under it, has the same version in both builds. grpc,
// protobuf, OpenTelemetry, Prometheus' client and golang.org/x are about a
// fifth of the services' build: this go.mod requires the versions the
// workspace (go.work) resolves, and this test fails when one drifts.
func TestSharedModulesHaveTheWorkspaceVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("lists two package graphs")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	daprd := moduleVersions(t, ".", []string{"GOWORK=off"}, ".")
	patterns := []string{"./launcher/cmd/papo"}
	for _, svc := range []string{"auth", "gateway", "message", "notification", "presence", "ws"} {
		patterns = append(patterns, "./services/"+svc)
	}
	work := moduleVersions(t, root, []string{"GOWORK=" + filepath.Join(root, "go.work")}, patterns...)
	shared := 0
	for path, v := range work {
		dv, ok := daprd[path]
		if !ok || dv == "" || v == "" { // the workspace's own modules have no version
			continue
		}
		shared++
		if dv != v {
			t.Errorf("%s: daprd builds %s, the services %s; make it %s in tools/daprd/go.mod (go get %s@%s, go mod tidy) so both builds share its packages", path, dv, v, v, path, v)
		}
	}
	if shared < 20 {
		t.Errorf("only %d modules are shared by the two builds: the comparison is not seeing them", shared)
	}
}
