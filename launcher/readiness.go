package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/papochat/papo/launcher/procs"
)

func (a *App) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	var last string
	for {
		a.mu.Lock()
		app, dpr := a.app, a.dpr
		a.mu.Unlock()
		for _, p := range []*procs.Proc{app, dpr} {
			if p.Exited() {
				return a.exitedError(p.Name, p.Err(), p.Tail())
			}
		}
		resp, err := hc.Get(a.URL() + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last /readyz: %s)\n  %s", a.Name, ctx.Err(), last,
				strings.Join(append(app.Tail(), dpr.Tail()...), "\n  "))
		case <-t.C:
		}
	}
}

// waitReady waits for every app. The launcher picks free ports and
// releases them before daprd binds them, so another process (a parallel
// test's stack) can take one in between; a sidecar that dies with "address
// already in use" is started again on new ports, up to three times.
func (s *Stack) waitReady(ctx context.Context) error {
	type result struct {
		app *App
		err error
	}
	results := make(chan result, len(s.apps))
	for _, a := range s.apps {
		go func() { results <- result{a, a.waitReady(ctx)} }()
	}
	var errs []error
	retries := map[*App]int{}
	for pending := len(s.apps); pending > 0; pending-- {
		r := <-results
		if r.err == nil {
			continue
		}
		if r.app.bindFailed() && retries[r.app] < 3 && ctx.Err() == nil {
			retries[r.app]++
			fmt.Fprintf(s.opts.Progress, "papo: %s lost a port to another process; restarting it on new ports\n", r.app.Name)
			if err := r.app.newSidecarPorts(); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := s.writePrometheusConfig(); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := r.app.replace(); err != nil {
				errs = append(errs, err)
				continue
			}
			pending++
			go func() { results <- result{r.app, r.app.waitReady(ctx)} }()
			continue
		}
		errs = append(errs, r.err)
	}
	return errors.Join(errs...)
}

// waitInvocation waits until every sidecar that serves service invocation
// can invoke every app-id. A
// sidecar reports ready before its name resolver has initialized, and an
// app's registration may land a moment after its own readiness, so a
// stack is ready only when service invocation works from everywhere.
func (s *Stack) waitInvocation(ctx context.Context) error {
	ids := map[string]bool{}
	for _, a := range s.apps {
		ids[a.AppID] = true
	}
	for _, from := range s.apps {
		for id := range ids {
			if err := s.waitInvoke(ctx, from, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitInvocationAround waits until every sidecar can invoke a's app-id
// and a's sidecar can invoke every app-id: after a restart, the other
// sidecars' connections to a's old sidecar are broken, and a new sidecar
// resolves the others afresh, a moment after the app is ready.
func (s *Stack) waitInvocationAround(ctx context.Context, a *App) error {
	for _, from := range s.apps {
		if err := s.waitInvoke(ctx, from, a.AppID); err != nil {
			return err
		}
	}
	for _, b := range s.apps {
		if err := s.waitInvoke(ctx, a, b.AppID); err != nil {
			return err
		}
	}
	return nil
}

// waitInvoke waits until from's sidecar, if it serves service invocation,
// invokes id's /healthz.
func (s *Stack) waitInvoke(ctx context.Context, from *App, id string) error {
	if !from.invokes {
		return nil
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	from.mu.Lock()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/%s/method/healthz", from.DaprHTTP, id)
	from.mu.Unlock()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("dapr-api-token", s.Tokens.Dapr)
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		// Service invocation has no circuit breaker (the profiles'
		// resiliency.yaml says why), so quick probes of an app-id that
		// does not resolve yet cost nothing but the calls.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s's sidecar cannot invoke %s: %w (last: %s)", from.Name, id, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
