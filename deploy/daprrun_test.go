package deploy

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// runFile mirrors the Dapr CLI's multi-app run template
// (dapr/cli pkg/runfileconfig and pkg/standalone RunConfig yaml tags), with
// the fields papo uses; strict decoding refuses anything else.
type runFile struct {
	Version int `json:"version"`
	Common  struct {
		ResourcesPath      string            `json:"resourcesPath"`
		ConfigFilePath     string            `json:"configFilePath,omitempty"`
		AppProtocol        string            `json:"appProtocol"`
		AppHealthCheckPath string            `json:"appHealthCheckPath"`
		Env                map[string]string `json:"env"`
	} `json:"common"`
	Apps []struct {
		AppID                string            `json:"appID"`
		ConfigFilePath       string            `json:"configFilePath"`
		AppDirPath           string            `json:"appDirPath"`
		AppPort              int               `json:"appPort"`
		DaprHTTPPort         int               `json:"daprHTTPPort"`
		DaprGRPCPort         int               `json:"daprGRPCPort"`
		DaprInternalGRPCPort int               `json:"daprInternalGRPCPort"`
		MetricsPort          int               `json:"metricsPort"`
		AppLogDestination    string            `json:"appLogDestination"`
		DaprdLogDestination  string            `json:"daprdLogDestination"`
		Env                  map[string]string `json:"env"`
		Command              []string          `json:"command"`
	} `json:"apps"`
}

func TestDaprRunFileDescribesEveryApp(t *testing.T) {
	var f runFile
	readStrict(t, filepath.Join(root, "dapr.yaml"), &f)
	if f.Version != 1 {
		t.Errorf("version %d, want 1", f.Version)
	}
	mustExist(t, "common.resourcesPath", f.Common.ResourcesPath)
	if f.Common.ConfigFilePath != "" {
		t.Errorf("common.configFilePath %s: each app runs with its own Configuration", f.Common.ConfigFilePath)
	}
	for _, env := range []string{"APP_HOST", "LOG_LEVEL"} {
		if f.Common.Env[env] == "" {
			t.Errorf("common env has no %s", env)
		}
	}

	count := map[string]int{}
	ports := map[int]string{}
	for _, a := range f.Apps {
		want := appByID(t, a.AppID)
		count[a.AppID]++
		if a.AppDirPath != "./services/"+a.AppID {
			t.Errorf("%s appDirPath %q", a.AppID, a.AppDirPath)
		}
		// Its own Configuration: the API allow-list of dapr/<app-id>.yaml.
		if a.ConfigFilePath != "./dapr/"+a.AppID+".yaml" {
			t.Errorf("%s configFilePath %q, want ./dapr/%s.yaml", a.AppID, a.ConfigFilePath, a.AppID)
		}
		mustExist(t, a.AppID+" configFilePath", a.ConfigFilePath)
		// The API tokens come from the shell (docs/deploy.md), never from
		// the file: a value here would be a secret in Git.
		for _, env := range []map[string]string{a.Env, f.Common.Env} {
			for _, k := range []string{"APP_API_TOKEN", "DAPR_API_TOKEN"} {
				if _, ok := env[k]; ok {
					t.Errorf("%s sets %s in the run file", a.AppID, k)
				}
			}
		}
		// The first replica keeps the reference port; further ws replicas
		// take the next ones.
		if wantPort := want.port + count[a.AppID] - 1; a.AppPort != wantPort {
			t.Errorf("%s #%d appPort %d, want %d", a.AppID, count[a.AppID], a.AppPort, wantPort)
		}
		if len(a.Command) != 3 || a.Command[0] != "go" || a.Command[1] != "run" || a.Command[2] != "." {
			t.Errorf("%s command %v, want [go run .]", a.AppID, a.Command)
		}
		// Every port of every process must differ: daprd fails at start on
		// a collision.
		// The app's own metrics listener too: every app defaults to :9464,
		// which the second app on one machine could not bind.
		_, metricsAddr, _ := strings.Cut(a.Env["METRICS_ADDR"], "127.0.0.1:")
		appMetrics, _ := strconv.Atoi(metricsAddr)
		for what, p := range map[string]int{
			"appPort": a.AppPort, "daprHTTPPort": a.DaprHTTPPort, "daprGRPCPort": a.DaprGRPCPort,
			"daprInternalGRPCPort": a.DaprInternalGRPCPort, "metricsPort": a.MetricsPort,
			"METRICS_ADDR (127.0.0.1:port)": appMetrics,
		} {
			if p == 0 {
				t.Errorf("%s %s is not set", a.AppID, what)
				continue
			}
			id := a.AppID + "#" + strconv.Itoa(count[a.AppID]) + " " + what
			if other, dup := ports[p]; dup {
				t.Errorf("port %d used by %s and %s", p, other, id)
			}
			ports[p] = id
		}
		if a.AppID == "ws" && a.Env["WS_ALLOWED_ORIGINS"] == "" {
			t.Errorf("ws #%d has no WS_ALLOWED_ORIGINS: browsers could not open a socket", count[a.AppID])
		}
		if count[a.AppID] > 1 && (a.AppLogDestination != "console" || a.DaprdLogDestination != "console") {
			t.Errorf("%s replica %d logs to files, which the first replica's share a name with", a.AppID, count[a.AppID])
		}
	}
	for _, a := range apps {
		if count[a.id] != a.replicas {
			t.Errorf("%s appears %d times, want %d", a.id, count[a.id], a.replicas)
		}
	}
}
