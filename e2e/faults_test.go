package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/launcher"
)

// The fault suite (issue 15): clients chat through the gateway while the
// suite kills processes (the launcher restarts them) and restarts the
// machine's brokers, then the checker (faultcheck_test.go) holds the
// result to papo's promise, and the report says what each fault cost.
// TestFaultSuite is the short form that `make test` runs on the local,
// redis and rabbitmq-postgres profiles; TestChaos the long one (make
// chaos).

type suiteConfig struct {
	rooms, perRoom int
	rate           float64 // new messages per second per client
	// faultEvery: 0 causes each fault once, after the stack recovered
	// from the one before; otherwise a fault every faultEvery (round
	// robin over the profile's faults) until duration.
	faultEvery time.Duration
	duration   time.Duration
	warmUp     time.Duration
	// faults, when set, replace the profile's (faultsFor).
	faults []fault
	// warm, when set, checks the stack after the warm-up, before the
	// first fault.
	warm func(t *testing.T, s *launcher.Stack)
}

// TestFaultSuite runs the short fault suite on each profile whose
// infrastructure the machine has.
func TestFaultSuite(t *testing.T) {
	for _, profile := range []string{"local", "redis", "rabbitmq-postgres"} {
		t.Run(profile, func(t *testing.T) {
			s := stack(t, profile)
			rep := runFaultSuite(t, s, profile, suiteConfig{rooms: 2, perRoom: 3, rate: 5, warmUp: 2 * time.Second})
			t.Log("\n" + rep)
			writeReport(t, "PAPO_FAULT_REPORT", profile, rep)
		})
	}
}

// TestFaultSuiteTwoMessageReplicas runs the short fault suite with two
// message replicas, which share the store and take submissions in turn
// (ws calls either): each replica is killed, app and sidecar, while the
// other commits the same rooms, so a replica's pending materialization,
// its remembered membership and its owed read markers all die with it
// mid-traffic.
func TestFaultSuiteTwoMessageReplicas(t *testing.T) {
	for _, profile := range []string{"local", "redis"} {
		t.Run(profile, func(t *testing.T) {
			s := startStack(t, profile+"-2msg", profile, func(o *launcher.Options) {
				o.Replicas = map[string]int{"message": 2}
			})
			rep := runFaultSuite(t, s, profile, suiteConfig{rooms: 2, perRoom: 3, rate: 5, warmUp: 2 * time.Second,
				faults: []fault{killApp("message-1"), killSidecar("message-2"), killApp("message-2"), killSidecar("message-1")},
				warm:   bothReplicasStore})
			t.Log("\n" + rep)
		})
	}
}

// bothReplicasStore checks that each message replica has stored
// submissions by the end of the warm-up: the suite's premise is that two
// replicas write the same rooms, each submission to whichever the ws
// replica's sidecar picks. Read before any fault, since a replica that
// is killed starts its counters again.
func bothReplicasStore(t *testing.T, s *launcher.Stack) {
	t.Helper()
	for _, a := range s.Apps("message") {
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", a.MetricsPort)
		var stored float64
		within(t, 20*time.Second, a.Name+" stores submissions", func() bool {
			stored = scrapeOnce(t, url).value("papo_message_submissions_total", "outcome", "stored")
			return stored > 0
		})
		t.Logf("%s stored %.0f submissions in the warm-up", a.Name, stored)
	}
}

// TestChaos is `make chaos`: 10 minutes at 200 msgs/s with a fault every
// 30 s, on $PROFILE (default local), and a report in
// $PAPO_CHAOS_REPORT (default .data/chaos/<profile>.md).
func TestChaos(t *testing.T) {
	if os.Getenv("PAPO_CHAOS") != "1" {
		t.Skip("the long fault suite: make chaos (PAPO_CHAOS=1)")
	}
	profile := cmpOr(os.Getenv("PROFILE"), "local")
	cfg := suiteConfig{rooms: 4, perRoom: 10, rate: 5, faultEvery: 30 * time.Second, duration: 10 * time.Minute, warmUp: 5 * time.Second}
	if d, err := time.ParseDuration(os.Getenv("PAPO_CHAOS_DURATION")); err == nil {
		cfg.duration = d
	}
	if r, err := strconv.ParseFloat(os.Getenv("PAPO_CHAOS_RATE"), 64); err == nil && r > 0 {
		cfg.rate = r / float64(cfg.rooms*cfg.perRoom)
	}
	s := stack(t, profile)
	rep := runFaultSuite(t, s, profile, cfg)
	t.Log("\n" + rep)
	root, _ := launcher.FindRoot(".")
	path := cmpOr(os.Getenv("PAPO_CHAOS_REPORT"), filepath.Join(root, ".data", "chaos", profile+".md"))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		if err := os.WriteFile(path, []byte(rep), 0o644); err == nil {
			t.Logf("report written to %s", path)
		}
	}
}

func writeReport(t *testing.T, env, profile, rep string) {
	dir := os.Getenv(env)
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Log(err)
		return
	}
	_ = os.WriteFile(filepath.Join(dir, profile+".md"), []byte(rep), 0o644)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// runFaultSuite runs the workload and the faults on s, checks the result
// (failing t on any violation) and returns the report.
func runFaultSuite(t *testing.T, s *launcher.Stack, profile string, cfg suiteConfig) string {
	ctx := context.Background()
	// The rooms, each with its clients as members.
	var clients []*chatClient
	var owners []*user
	var rooms []string
	for r := range cfg.rooms {
		owner := newUser(t, s, "fault")
		room, err := owner.CreateRoom(ctx, randomName("fault-"), api.RoomPublic)
		if err != nil {
			t.Fatal(err)
		}
		rooms, owners = append(rooms, room.ID), append(owners, owner)
		for i := range cfg.perRoom {
			u := owner
			if i > 0 {
				u = newUser(t, s, "fault")
				if _, err := u.JoinRoom(ctx, room.ID); err != nil {
					t.Fatal(err)
				}
			}
			name := fmt.Sprintf("r%dc%d", r, i)
			clients = append(clients, newChatClient(name, u, s.GatewayURL, room.ID, cfg.rate, 8))
		}
	}
	prober := newUser(t, s, "probe")

	probeCtx, stopProbes := context.WithCancel(ctx)
	var probe probes
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); probe.run(probeCtx, s, prober.Token) }()
	sending, stopSending := context.WithCancel(ctx)
	done, stopClients := context.WithCancel(ctx)
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(sending, done) }()
	}
	stopAll := func() {
		stopSending()
		stopClients()
		stopProbes()
		wg.Wait()
	}
	defer stopAll()

	began := time.Now()
	time.Sleep(cfg.warmUp) // traffic before the first fault, for the report
	if cfg.warm != nil {
		cfg.warm(t, s)
	}
	faults := faultsFor(profile, cfg.faultEvery > 0)
	if cfg.faults != nil {
		faults = cfg.faults
	}
	var runs []faultRun
	cause := func(f fault) (back func(context.Context) error) {
		t.Logf("fault: %s", f.name)
		r := faultRun{name: f.name, at: time.Now()}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		back, r.err = f.do(fctx, s)
		cancel()
		r.took = time.Since(r.at)
		if r.err != nil {
			t.Errorf("fault %s: %v", f.name, r.err)
		}
		runs = append(runs, r)
		return back
	}
	if cfg.faultEvery == 0 {
		for _, f := range faults {
			if back := cause(f); back != nil {
				bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				if err := back(bctx); err != nil {
					t.Errorf("after %s: %v", f.name, err)
				}
				cancel()
			}
			waitRecovered(t, s, clients)
		}
	} else {
		for i := 0; time.Since(began) < cfg.duration; i++ {
			cause(faults[i%len(faults)])
			next := runs[len(runs)-1].at.Add(cfg.faultEvery)
			time.Sleep(time.Until(next)) // the schedule: one fault every faultEvery
		}
	}
	stopSending()
	sendingStopped := time.Now()
	for i := range runs {
		end := sendingStopped
		if i+1 < len(runs) {
			end = runs[i+1].at
		}
		runs[i].window = end.Sub(runs[i].at)
	}

	// Every send acked (the clients keep retrying), then every receiver
	// at the head of its room.
	tot := totals{profile: profile, clients: len(clients), rooms: cfg.rooms, rate: cfg.rate * float64(len(clients)),
		duration: sendingStopped.Sub(began)}
	within(t, 2*time.Minute, "every send acked", func() bool {
		for _, c := range clients {
			if c.unacked() > 0 {
				return false
			}
		}
		return true
	})
	tot.drainTook = time.Since(sendingStopped)
	history := map[string][]api.Event{}
	for i, room := range rooms {
		history[room] = fetchHistory(t, owners[i], room)
	}
	caughtUp := time.Now()
	within(t, time.Minute, "every receiver at the head of its room", func() bool {
		for _, c := range clients {
			if c.seen(c.room) < int64(len(history[c.room])) {
				return false
			}
		}
		return true
	})
	tot.catchUpTook = time.Since(caughtUp)
	stopAll()
	// Read again: nothing may have changed since.
	for i, room := range rooms {
		history[room] = fetchHistory(t, owners[i], room)
	}

	tot.problems = check(history, clients)
	summarize(&tot, history, clients)
	rep := report(tot, measure(runs, probe.all(), clients))
	if len(tot.problems) > 0 {
		t.Errorf("%d violations of the delivery promise:\n  %s", len(tot.problems), strings.Join(tot.problems, "\n  "))
	}
	within(t, time.Minute, "every service up after the suite", func() bool {
		st, err := serviceStatus(t, s)
		return err == nil && st.Status == "ok"
	})
	return rep
}

// waitRecovered waits until the status shows every service up and every
// client connected and acked since, so the next fault meets a recovered
// stack.
func waitRecovered(t *testing.T, s *launcher.Stack, clients []*chatClient) {
	t.Helper()
	since := time.Now()
	within(t, 2*time.Minute, "the stack to recover", func() bool {
		st, err := serviceStatus(t, s)
		if err != nil || st.Status != "ok" {
			return false
		}
		for _, c := range clients {
			if !c.ackedSince(since) {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // steady traffic between faults, for the report
}

// fetchHistory reads a room's whole log.
func fetchHistory(t *testing.T, u *user, room string) []api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []api.Event
	var after int64
	for {
		var page api.EventsResponse
		var err error
		for range 20 { // a restarted message service may still be coming up
			if page, err = u.EventsAfter(ctx, room, after, 200); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("history of %s after %d: %v", room, after, err)
		}
		out = append(out, page.Events...)
		if len(page.Events) < 200 {
			return out
		}
		after = page.Events[len(page.Events)-1].Seq
	}
}
