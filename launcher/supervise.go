package launcher

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/papochat/papo/launcher/procs"
	"github.com/papochat/papo/platform/wait"
)

// Supervision: a process of a running stack that exits without being told
// to (a crash, kill -9, the OOM killer) is announced on Options.Alerts and
// started again after a backoff, on the same ports, and the stack says
// when it is ready again.
//
// What restarts with what. An app and its daprd are restarted apart:
//   - A restarted app finds its sidecar as it left it. daprd has no app
//     health check here, so it kept its subscriptions (read from the app's
//     /dapr/subscribe when it started; the app serves the same list) and
//     delivers again as soon as the app listens; deliveries that failed
//     meanwhile are redelivered by the broker. Streaming subscriptions
//     (ws, and every service's sessions.revoked) are the app's own and are
//     opened again by the new process.
//   - An app whose daprd restarted keeps running: its gRPC client
//     reconnects by itself, its streaming subscriptions resubscribe with
//     backoff (ws then catches up on the room events it missed meanwhile,
//     see services/ws), and the new daprd reads /dapr/subscribe from the
//     running app and registers in name resolution on the same ports.
//   - They restart as a pair only when the sidecar cannot get its ports
//     back (another process took one): it gets new ones, and the app is
//     restarted to learn them.
//
// This is what Kubernetes does too: the kubelet restarts a pod's crashed
// container alone, so each app must survive its sidecar's restart by
// itself, and the launcher does not paper over it.

// maxRestartDelay caps the backoff between restarts in a row.
const maxRestartDelay = 10 * time.Second

// steadyFor is how long a process must have run for its next crash to
// count as a new one (the backoff starts over).
const steadyFor = 30 * time.Second

// supervise starts one supervisor per app; Stop ends them.
func (s *Stack) supervise() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSupervising = cancel
	for _, a := range s.apps {
		s.supervising.Add(1)
		go func() {
			defer s.supervising.Done()
			a.supervise(ctx)
		}()
	}
}

// alert writes one supervisor message, loud enough to find in a log.
func (s *Stack) alert(format string, args ...any) {
	fmt.Fprintf(s.opts.Alerts, "papo: "+format+"\n", args...)
}

// supervise watches the app's processes until ctx ends and restarts the
// ones that exit unexpectedly.
func (a *App) supervise(ctx context.Context) {
	s := a.stack
	delay := s.opts.RestartDelay
	for {
		a.mu.Lock()
		app, dpr, gen, changed, stopped := a.app, a.dpr, a.gen, a.changed, a.stopped
		a.mu.Unlock()
		if changed == nil {
			changed = make(chan struct{}) // never replaced yet
		}
		if stopped {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		var dead *procs.Proc
		select {
		case <-ctx.Done():
			return
		case <-changed:
			continue
		case <-app.Done():
			dead = app
		case <-dpr.Done():
			dead = dpr
		}
		if ctx.Err() != nil || !a.crashed(gen, dead) {
			continue
		}
		if time.Since(dead.Started()) > steadyFor {
			delay = s.opts.RestartDelay
		}
		n := a.restarts.Add(1)
		s.alert("!!! %s exited unexpectedly (%s) after %s; restarting it in %s (restart %d of %s)%s",
			dead.Name, exitReason(dead), time.Since(dead.Started()).Round(time.Millisecond), delay, n, a.Name, lastLines(dead))
		down := time.Now()
		if !wait.For(ctx, delay) {
			return
		}
		delay = min(delay*2, maxRestartDelay)
		restarted, err := a.revive(gen)
		if err != nil {
			s.alert("!!! %s could not be restarted: %v", a.Name, err)
			continue
		}
		if restarted == "" {
			continue // replaced or stopped on purpose meanwhile
		}
		if err := a.waitReady(ctx); err != nil {
			if ctx.Err() == nil {
				s.alert("!!! %s restarted (%s) but is not ready: %v", a.Name, restarted, firstLine(err))
			}
			continue
		}
		// Ready is not reachable yet: the other sidecars reconnect to a
		// restarted one a moment later.
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.waitInvocationAround(ictx, a)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.alert("!!! %s is ready but not reachable through the sidecars: %v", a.Name, firstLine(err))
		}
		s.alert("%s is ready again, %s after the exit (restarted: %s)", a.Name, time.Since(down).Round(time.Millisecond), restarted)
	}
}

// crashed reports whether dead exited on its own: it is still the app's
// process, and nothing replaced or stopped the app on purpose since gen.
// It waits for a replacement under way (Restart holds a.ops from the
// moment it records itself until the new processes run).
func (a *App) crashed(gen int, dead *procs.Proc) bool {
	a.ops.Lock()
	defer a.ops.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen == gen && !a.stopped && (a.app == dead || a.dpr == dead)
}

// sameGen reports whether no deliberate replacement happened since gen.
func (a *App) sameGen(gen int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen == gen && !a.stopped
}

// revive starts again what of the app and its sidecar has exited, unless
// they were replaced or stopped on purpose since gen (then it returns "").
func (a *App) revive(gen int) (string, error) {
	a.ops.Lock()
	defer a.ops.Unlock()
	if !a.sameGen(gen) {
		return "", nil
	}
	app, dpr := a.proc(false), a.proc(true)
	appDead, dprDead := app.Exited(), dpr.Exited()
	if dprDead && a.bindFailed() {
		// The sidecar lost a port: new ports, which the app must learn.
		if err := a.newSidecarPorts(); err != nil {
			return "", err
		}
		if err := a.stack.writePrometheusConfig(); err != nil {
			return "", err
		}
		a.stopProcs()
		if err := a.start(); err != nil {
			return "", err
		}
		return "app and sidecar, the sidecar on new ports", nil
	}
	var what []string
	if appDead {
		p, err := a.startApp()
		if err != nil {
			return "", err
		}
		a.mu.Lock()
		a.app = p
		a.mu.Unlock()
		what = append(what, "app")
	}
	if dprDead {
		p, err := a.startSidecar()
		if err != nil {
			return "", err
		}
		a.mu.Lock()
		a.dpr = p
		a.mu.Unlock()
		what = append(what, "sidecar")
	}
	return strings.Join(what, " and "), nil
}

// exitReason says how a process ended: "signal: killed", "exit status 1".
func exitReason(p *procs.Proc) string {
	if p.Err() == nil {
		return "exit status 0"
	}
	return p.Err().Error()
}

// lastLines is the end of what a process printed, for the alert.
func lastLines(p *procs.Proc) string {
	tail := p.Tail()
	if len(tail) > 5 {
		tail = tail[len(tail)-5:]
	}
	if len(tail) == 0 {
		return ""
	}
	return "; its last lines:\n    " + strings.Join(tail, "\n    ")
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
