package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

var verbose = flag.Bool("stack-log", false, "print every process's log of the stacks under benchmark")

// stackEnv is added to every service of a benchmark stack: the abuse limits
// are there for people, not for a load generator, so they are raised out of
// the way (each has its own test elsewhere).
var stackEnv = map[string]string{
	"LOG_LEVEL":             "warn",
	"GATEWAY_RATE_PER_IP":   "10000000",
	"GATEWAY_RATE_PER_USER": "10000000",
	"WS_RATE":               "100000",
	"WS_BURST":              "100000",
	"WS_MAX_CONNS_PER_USER": "200",
	"ACCESS_TOKEN_TTL":      "1h",
}

// startStack starts a fresh stack of profile with messageReplicas message
// replicas and two ws replicas, in its own temporary data dir, and stops it
// when the benchmark ends. A profile whose servers are missing skips.
func startStack(b *testing.B, profile string, messageReplicas int) *launcher.Stack {
	b.Helper()
	return startStackWith(b, profile, messageReplicas, false)
}

// startStackWith is startStack, with every sidecar serving pprof when
// daprdProfiling is set.
func startStackWith(b *testing.B, profile string, messageReplicas int, daprdProfiling bool) *launcher.Stack {
	b.Helper()
	if testing.Short() {
		b.Skip("benchmark: starts a whole stack")
	}
	root, err := benchRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "papo-bench-"+profile+"-")
	if err != nil {
		b.Fatal(err)
	}
	var log io.Writer = io.Discard
	if *verbose {
		log = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := launcher.Start(ctx, launcher.Options{
		Root:           root,
		Profile:        profile,
		DataDir:        dir,
		GatewayAddr:    "127.0.0.1:0",
		Replicas:       map[string]int{"message": messageReplicas},
		Log:            log,
		Env:            stackEnv,
		DaprdProfiling: daprdProfiling,
		Pprof:          daprdProfiling,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		if errors.Is(err, launcher.ErrInfraMissing) || strings.Contains(err.Error(), launcher.ErrInfraMissing.Error()) {
			b.Skipf("profile %s: %v", profile, err)
		}
		b.Fatalf("start stack %s: %v", profile, err)
	}
	b.Logf("stack %s (message replicas: %d) ready in %s", profile, messageReplicas, time.Since(start).Round(time.Second))
	b.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	})
	return s
}

// benchRoot is the source tree whose services are built and measured:
// PAPO_BENCH_ROOT when set (e.g. a `git archive` export of one commit, so
// edits in progress elsewhere never change what is measured), else the
// repository this package is in.
func benchRoot() (string, error) {
	if r := os.Getenv("PAPO_BENCH_ROOT"); r != "" {
		return launcher.FindRoot(r)
	}
	return launcher.FindRoot(".")
}

// user is a registered, logged-in user.
type user struct {
	*client.Client
	api.User
}

func randomName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newUsers registers and logs in n fresh users through the gateway, a few
// at a time (password hashing is the auth service's deliberate cost).
func newUsers(b *testing.B, s *launcher.Stack, prefix string, n int) []*user {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	users := make([]*user, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var retries atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c := client.New(s.GatewayURL)
			name := randomName(prefix)
			pw := "correct horse " + name
			err := retry5xx(ctx, &retries, func() error {
				_, err := c.Register(ctx, name, pw, name)
				var ce *client.Error
				if errors.As(err, &ce) && ce.Status == http.StatusConflict {
					return nil // an earlier try got through
				}
				return err
			})
			if err != nil {
				errs[i] = fmt.Errorf("register %s: %w", name, err)
				return
			}
			var tok api.TokenResponse
			err = retry5xx(ctx, &retries, func() (err error) {
				tok, err = c.Login(ctx, name, pw)
				return err
			})
			if err != nil {
				errs[i] = fmt.Errorf("login %s: %w", name, err)
				return
			}
			users[i] = &user{Client: c, User: tok.User}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	if n := retries.Load(); n > 0 {
		b.Logf("registering %d users took %d retries of 5xx answers", n, retries.Load())
	}
	return users
}

// retry5xx calls f until it succeeds, fails with something else than a
// 5xx answer, or 20 tries have failed, 500 ms apart. A fresh stack's
// sidecars can answer 500 "name resolver not initialized" or "no host
// found" for a moment after they report ready, and under heavy load; a
// client retries such answers, and so does the load generator (the
// count is reported).
func retry5xx(ctx context.Context, retries *atomic.Int64, f func() error) error {
	var err error
	for range 20 {
		if err = f(); err == nil {
			return nil
		}
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status < 500 {
			return err
		}
		retries.Add(1)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}

// wsURL is the WebSocket URL of one app (a ws replica).
func wsURL(s *launcher.Stack, replica string) string {
	return "ws" + strings.TrimPrefix(s.App(replica).URL(), "http") + "/ws"
}

// appToken is the header a ws replica wants from its callers (the
// gateway's proxy presents it): the stack's app API token.
func appToken(s *launcher.Stack) http.Header {
	return http.Header{"Dapr-Api-Token": {s.Tokens.App}}
}

// dialReplica opens a WebSocket straight to one ws replica as u.
func dialReplica(b *testing.B, s *launcher.Stack, replica string, u *user) *client.WS {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, err := client.DialWS(ctx, wsURL(s, replica), u.Token, &client.WSOptions{Buffer: 1 << 16, Header: appToken(s)})
	if err != nil {
		b.Fatalf("dial %s as %s: %v", replica, u.Username, err)
	}
	b.Cleanup(func() { ws.Close() })
	return ws
}

// pump sends the frames next makes over ws, keeping at most window of
// them waiting for their ack (the ws service caps unacknowledged sends per
// connection), until next says stop and every ack is in, or ctx ends.
// onAck sees every ack as it arrives. An error frame stops it.
func pump(ctx context.Context, ws *client.WS, window int, next func(i int) (api.ClientFrame, bool), onAck func(api.ServerFrame)) (sent, acked int, err error) {
	more := true
	for {
		for more && sent-acked < window {
			var f api.ClientFrame
			if f, more = next(sent); !more {
				break
			}
			if err := ws.Send(f); err != nil {
				return sent, acked, err
			}
			sent++
		}
		if !more && acked == sent {
			return sent, acked, nil
		}
		f, err := ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return sent, acked, nil
			}
			return sent, acked, err
		}
		switch f.Type {
		case api.FrameAck:
			acked++
			if onAck != nil {
				onAck(f)
			}
		case api.FrameError:
			return sent, acked, fmt.Errorf("error frame %s (ref %s): %s", f.Code, f.Ref, f.Message)
		}
	}
}

// seedRoom sends n messages into room over ws, 200 at a time, and returns
// the room's last seq once every one is acknowledged.
func seedRoom(b *testing.B, u *user, ws *client.WS, room string, n int) int64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := randomName("seed-")
	_, acked, err := pump(ctx, ws, 200, func(i int) (api.ClientFrame, bool) {
		return api.ClientFrame{Type: api.FrameSend, RoomID: room, ClientID: prefix + "-" + strconv.Itoa(i),
			Text: "seed message number " + strconv.Itoa(i)}, i < n
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if acked < n {
		b.Fatalf("seeding room %s: %d of %d messages acknowledged in time", room, acked, n)
	}
	page, err := u.EventsAfter(ctx, room, 0, 1)
	if err != nil {
		b.Fatal(err)
	}
	return page.LastSeq
}

// percentile returns the q-quantile (0 < q ≤ 1) of sorted ds, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// latencySummary sorts ds and returns p50, p99, max and mean.
func latencySummary(ds []time.Duration) (p50, p99, maxD, mean time.Duration) {
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	if len(ds) == 0 {
		return 0, 0, 0, 0
	}
	return percentile(ds, 0.50), percentile(ds, 0.99), ds[len(ds)-1], sum / time.Duration(len(ds))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loadavg is the machine's 1-minute load average, to say how noisy a run was.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// once runs measure the first time a benchmark named name runs in this
// process and hands later calls (a larger b.N) the same result: each
// measurement is one fixed, bounded run, not b.N iterations.
type results struct {
	mu   sync.Mutex
	done map[string]map[string]float64
}

var measured = &results{done: map[string]map[string]float64{}}

func (r *results) once(b *testing.B, measure func() map[string]float64) {
	b.Helper()
	r.mu.Lock()
	m, ok := r.done[b.Name()]
	r.mu.Unlock()
	if !ok {
		m = measure()
		r.mu.Lock()
		r.done[b.Name()] = m
		r.mu.Unlock()
	}
	b.ReportMetric(0, "ns/op") // suppressed: the metrics below are the result
	for unit, v := range m {
		b.ReportMetric(v, unit)
	}
}
