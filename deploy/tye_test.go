package deploy

import (
	"path/filepath"
	"strconv"
	"testing"
)

// tyeFile mirrors the parts of Project Tye's tye.yaml schema papo uses.
type tyeFile struct {
	Name       string `json:"name"`
	Extensions []struct {
		Name           string `json:"name"`
		LogLevel       string `json:"log-level"`
		ComponentsPath string `json:"components-path"`
		// Services holds the dapr extension's per-service settings.
		Services map[string]struct {
			Config string `json:"config"`
		} `json:"services"`
	} `json:"extensions"`
	Services []struct {
		Name             string `json:"name"`
		Executable       string `json:"executable"`
		Args             string `json:"args"`
		WorkingDirectory string `json:"workingDirectory"`
		Replicas         int    `json:"replicas,omitempty"`
		Env              []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"env"`
		Bindings []struct {
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
		} `json:"bindings"`
	} `json:"services"`
}

func TestTyeDescribesEveryApp(t *testing.T) {
	var f tyeFile
	readStrict(t, filepath.Join(root, "tye.yaml"), &f)
	if len(f.Extensions) != 1 || f.Extensions[0].Name != "dapr" {
		t.Fatalf("extensions %+v, want the dapr extension", f.Extensions)
	}
	mustExist(t, "components-path", f.Extensions[0].ComponentsPath)
	seen := map[string]bool{}
	for _, s := range f.Services {
		// The dapr extension uses the service name as the app-id.
		a := appByID(t, s.Name)
		seen[s.Name] = true
		if s.WorkingDirectory != "services/"+s.Name || s.Executable != "go" || s.Args != "run ." {
			t.Errorf("%s runs %s %q in %s", s.Name, s.Executable, s.Args, s.WorkingDirectory)
		}
		if len(s.Bindings) != 1 || s.Bindings[0].Port != a.port || s.Bindings[0].Protocol != "http" {
			t.Errorf("%s bindings %+v, want http %d", s.Name, s.Bindings, a.port)
		}
		env := map[string]string{}
		for _, e := range s.Env {
			env[e.Name] = e.Value
		}
		if env["APP_PORT"] != strconv.Itoa(a.port) {
			t.Errorf("%s APP_PORT %q, want %d", s.Name, env["APP_PORT"], a.port)
		}
		if env["APP_HOST"] == "" || env["LOG_LEVEL"] == "" {
			t.Errorf("%s lacks APP_HOST or LOG_LEVEL", s.Name)
		}
		for _, k := range []string{"APP_API_TOKEN", "DAPR_API_TOKEN"} {
			if _, ok := env[k]; ok {
				t.Errorf("%s sets %s in tye.yaml: the tokens come from the shell", s.Name, k)
			}
		}
		// The extension passes --config <components-path>/<config>.yaml:
		// the app's own Configuration, dapr/<app-id>.yaml.
		cfg := f.Extensions[0].Services[s.Name].Config
		if got, want := filepath.Clean(filepath.Join(f.Extensions[0].ComponentsPath, cfg+".yaml")), filepath.Join("dapr", s.Name+".yaml"); got != want {
			t.Errorf("%s runs with Configuration %s, want %s", s.Name, got, want)
		}
	}
	for _, a := range apps {
		if !seen[a.id] {
			t.Errorf("tye.yaml has no service %s", a.id)
		}
	}
}
