package launcher

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/launcher/daprd"
	"github.com/papochat/papo/launcher/procs"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeStack is a stack of one app: testdata/fakeapp (it answers /readyz)
// and a "sidecar" that only sleeps, both supervised.
func fakeStack(t *testing.T, delay time.Duration) (*Stack, *App, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "fakeapp")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/fakeapp").CombinedOutput(); err != nil {
		t.Fatalf("build fakeapp: %v\n%s", err, out)
	}
	sidecar := filepath.Join(dir, "fakedaprd")
	if err := os.WriteFile(sidecar, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	alerts := &lockedBuffer{}
	s := &Stack{DataDir: dir, opts: Options{Log: &lockedBuffer{}, Alerts: alerts, RestartDelay: delay}, width: 12}
	a := &App{Name: "fake", AppID: "fake", Port: ports[0], stack: s, daprdPath: sidecar,
		spec:    procs.Spec{Name: "fake", Path: bin, Dir: dir, Env: []string{"APP_PORT=" + strconv.Itoa(ports[0])}},
		sidecar: daprd.Sidecar{AppID: "fake"}}
	s.apps = []*App{a}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	s.supervise()
	t.Cleanup(s.Stop)
	return s, a, alerts
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
}

func TestASupervisedProcessThatDiesIsRestartedAlone(t *testing.T) {
	for _, c := range []struct {
		name    string
		sidecar bool
	}{{"the app", false}, {"the sidecar", true}} {
		t.Run(c.name, func(t *testing.T) {
			_, a, alerts := fakeStack(t, 10*time.Millisecond)
			appPid, dprPid := a.Pid(), a.SidecarPid()
			if c.sidecar {
				a.KillSidecar()
			} else {
				a.KillApp()
			}
			waitFor(t, "the restart", func() bool {
				return a.Restarts() == 1 && strings.Contains(alerts.String(), "fake is ready again")
			})
			killed, kept, keptNow, killedNow := appPid, dprPid, a.SidecarPid(), a.Pid()
			if c.sidecar {
				killed, kept, keptNow, killedNow = dprPid, appPid, a.Pid(), a.SidecarPid()
			}
			if killedNow == killed || killedNow == 0 {
				t.Errorf("the killed process %d was not replaced (now %d)", killed, killedNow)
			}
			if keptNow != kept {
				t.Errorf("the other process was restarted too: %d, now %d", kept, keptNow)
			}
			if !strings.Contains(alerts.String(), "exited unexpectedly (signal: killed)") {
				t.Errorf("no loud alert:\n%s", alerts)
			}
		})
	}
}

func TestACrashLoopBacksOff(t *testing.T) {
	_, a, alerts := fakeStack(t, 100*time.Millisecond)
	for i := 1; i <= 3; i++ {
		a.KillApp()
		waitFor(t, "restart "+strconv.Itoa(i), func() bool {
			return a.Restarts() == i && strings.Count(alerts.String(), "is ready again") == i
		})
	}
	for _, want := range []string{"restarting it in 100ms (restart 1", "restarting it in 200ms (restart 2", "restarting it in 400ms (restart 3"} {
		if !strings.Contains(alerts.String(), want) {
			t.Errorf("alerts lack %q:\n%s", want, alerts)
		}
	}
}

func TestDeliberateStopsAndRestartsAreNotCrashes(t *testing.T) {
	s, a, alerts := fakeStack(t, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if err := a.Restart(ctx, a.daprdPath); err != nil {
			t.Fatal(err)
		}
	}
	a.Stop()
	// Give a supervisor that took any of that for a crash time to act.
	time.Sleep(200 * time.Millisecond)
	if a.Restarts() != 0 || strings.Contains(alerts.String(), "unexpectedly") {
		t.Fatalf("a deliberate restart or stop was taken for a crash (%d restarts):\n%s", a.Restarts(), alerts)
	}
	if p := a.proc(false); !p.Exited() {
		t.Fatal("the stopped app runs again")
	}
	// Nor is a Kill: it keeps the app down until Restart.
	if err := a.Restart(ctx, a.daprdPath); err != nil {
		t.Fatal(err)
	}
	a.Kill()
	time.Sleep(200 * time.Millisecond)
	if a.Restarts() != 0 || !a.proc(false).Exited() || !a.proc(true).Exited() {
		t.Fatalf("a Kill was repaired (%d restarts)", a.Restarts())
	}
	// A stopped app that is started again is supervised again.
	if err := a.Restart(ctx, a.daprdPath); err != nil {
		t.Fatal(err)
	}
	a.KillApp()
	waitFor(t, "the restart after a Restart", func() bool { return a.Restarts() == 1 })
	s.Stop()
}
