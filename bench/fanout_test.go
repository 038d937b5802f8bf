package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/bench/load"
	"github.com/papochat/papo/launcher"
)

var (
	fanoutProfiles = flag.String("fanout-profiles", "local", "comma list of profiles scenario A runs on")
	fanoutOnly     = flag.String("fanout-only", "", "comma list of fan-out scenarios to run (A, B, Peak, Idle); default all")
	fanoutCustom   = flag.String("fanout-custom", "", "an extra scenario clients,rooms,msgs/s,duration (e.g. 200,20,100,20s) run on -fanout-profiles")
	stackExtraEnv  = flag.String("stack-env", "", "extra environment for the stacks under benchmark: KEY=VALUE,KEY=VALUE (e.g. MESSAGE_ROUND_INTERVAL=10ms)")
	daprdPprof     = flag.String("pprof", "", "folder to write a CPU profile of every app and sidecar over each measured window to")
)

// fanoutEnv is added to the stacks of the fan-out benchmarks: the abuse
// limits are for people, not for a load generator that sends 10 msgs/s
// from each of 100 senders through one address.
var fanoutEnv = map[string]string{
	"LOG_LEVEL":             "warn",
	"GATEWAY_RATE_PER_IP":   "100000000",
	"GATEWAY_RATE_PER_USER": "100000000",
	"WS_RATE":               "100000",
	"WS_BURST":              "100000",
	"WS_MAX_CONNS_PER_USER": "50",
	"ACCESS_TOKEN_TTL":      "2h",
}

// scenario is one fan-out load.
type scenario struct {
	name           string
	clients, rooms int
	rate           float64
	duration       time.Duration
}

var (
	scenarioA = scenario{"A", 1000, 100, 1000, 30 * time.Second}
	scenarioB = scenario{"B", 5000, 50, 500, 30 * time.Second}
)

// BenchmarkFanout is issue 14's load benchmark: a fresh stack per
// scenario, driven through the public gateway by cmd/papoload (a separate
// process, so its CPU is not the stack's) with real WebSocket clients:
//
//   - A: 1,000 clients, 100 rooms of 10, 1,000 msgs/s, 30 s (on each of
//     -fanout-profiles);
//   - B: 5,000 clients, 50 rooms of 100, 500 msgs/s (50,000 deliveries/s);
//   - Peak: the highest rate into 100 rooms of 10 with p99 <= 100 ms and
//     nothing lost, stepping up from 1,000 msgs/s;
//   - Idle: memory per idle connection through the gateway at 10,000
//     sockets (gateway and ws replicas together).
//
// Each reports published / acked / delivered / lost / duplicated, latency
// from the scheduled send to the receiving socket, and the CPU every
// process of the stack spent per acked message.
func BenchmarkFanout(b *testing.B) {
	bin := buildLoadClient(b)
	run := func(name string) bool {
		if *fanoutOnly == "" {
			return true
		}
		return slices.Contains(strings.Split(*fanoutOnly, ","), name)
	}
	if run("A") {
		for _, profile := range strings.Split(*fanoutProfiles, ",") {
			b.Run("A/"+profile, func(b *testing.B) {
				measured.once(b, func() map[string]float64 {
					s := startFanoutStack(b, profile)
					return runScenario(b, s, bin, scenarioA).metrics()
				})
			})
		}
	}
	if *fanoutCustom != "" {
		sc := parseScenario(b, *fanoutCustom)
		for _, profile := range strings.Split(*fanoutProfiles, ",") {
			b.Run("Custom/"+profile, func(b *testing.B) {
				measured.once(b, func() map[string]float64 {
					s := startFanoutStack(b, profile)
					return runScenario(b, s, bin, sc).metrics()
				})
			})
		}
	}
	if run("B") {
		b.Run("B/local", func(b *testing.B) {
			measured.once(b, func() map[string]float64 {
				s := startFanoutStack(b, "local")
				return runScenario(b, s, bin, scenarioB).metrics()
			})
		})
	}
	if run("Peak") {
		b.Run("Peak/local", func(b *testing.B) {
			measured.once(b, func() map[string]float64 { return findPeak(b, bin) })
		})
	}
	if run("Idle") {
		b.Run("Idle/local", func(b *testing.B) {
			measured.once(b, func() map[string]float64 { return idleMemory(b, bin) })
		})
	}
}

// parseScenario reads "clients,rooms,rate,duration".
func parseScenario(b *testing.B, spec string) scenario {
	f := strings.Split(spec, ",")
	if len(f) != 4 {
		b.Fatalf("-fanout-custom %q: want clients,rooms,msgs/s,duration", spec)
	}
	clients, err1 := strconv.Atoi(f[0])
	rooms, err2 := strconv.Atoi(f[1])
	rate, err3 := strconv.ParseFloat(f[2], 64)
	d, err4 := time.ParseDuration(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		b.Fatalf("-fanout-custom %q: %v", spec, err)
	}
	return scenario{"custom", clients, rooms, rate, d}
}

func startFanoutStack(b *testing.B, profile string) *launcher.Stack {
	b.Helper()
	saved := stackEnv
	stackEnv = maps.Clone(fanoutEnv)
	for _, kv := range strings.Split(*stackExtraEnv, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			stackEnv[k] = v
		}
	}
	defer func() { stackEnv = saved }()
	return startStackWith(b, profile, 1, *daprdPprof != "")
}

// profileTargets are the pprof endpoints of a stack's processes: each
// sidecar's, and each app's (on its metrics port).
func profileTargets(s *launcher.Stack) map[string]string {
	out := map[string]string{}
	for _, a := range s.Apps("") {
		if a.DaprdProfilePort != 0 {
			out[a.Name+".dapr"] = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile", a.DaprdProfilePort)
		}
		if a.MetricsPort != 0 {
			out[a.Name] = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile", a.MetricsPort)
		}
	}
	return out
}

// profileSidecars writes a CPU profile of every app and sidecar of s over
// the next d to the -pprof folder, in the background.
func profileSidecars(b *testing.B, s *launcher.Stack, name string, d time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	if *daprdPprof == "" {
		return &wg
	}
	if err := os.MkdirAll(*daprdPprof, 0o755); err != nil {
		b.Fatal(err)
	}
	for proc, url := range profileTargets(s) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s?seconds=%d", url, int(d.Seconds())))
			if err != nil {
				b.Logf("profile %s: %v", proc, err)
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Logf("profile %s: %s %v", proc, resp.Status, err)
				return
			}
			file := filepath.Join(*daprdPprof, fmt.Sprintf("%s-%s.pprof", name, proc))
			if err := os.WriteFile(file, data, 0o644); err != nil {
				b.Logf("profile %s: %v", proc, err)
			}
		}()
	}
	return &wg
}

// buildLoadClient compiles cmd/papoload from this module.
func buildLoadClient(b *testing.B) string {
	b.Helper()
	if testing.Short() {
		b.Skip("benchmark: starts a whole stack")
	}
	bin := filepath.Join(b.TempDir(), "papoload")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/papoload")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build papoload: %v\n%s", err, out)
	}
	return bin
}

// result is one scenario's report and the stack's CPU over its measured
// window.
type result struct {
	sc     scenario
	rep    load.Report
	cpu    map[string]float64 // CPU seconds per process over the window
	window time.Duration
}

func (r result) stackCPU() float64 {
	var t float64
	for _, v := range r.cpu {
		t += v
	}
	return t
}

// cpuPerMessage is the stack's CPU per acked message, in ms.
func (r result) cpuPerMessage() float64 {
	if r.rep.Acked == 0 {
		return 0
	}
	return 1000 * r.stackCPU() / float64(r.rep.Acked)
}

func (r result) metrics() map[string]float64 {
	return map[string]float64{
		"published":      float64(r.rep.Published),
		"acked":          float64(r.rep.Acked),
		"refused":        float64(r.rep.Refused),
		"lost":           float64(r.rep.Lost),
		"duplicated":     float64(r.rep.Duplicated),
		"delivered":      float64(r.rep.Delivered),
		"p50-ms":         r.rep.P50,
		"p90-ms":         r.rep.P90,
		"p99-ms":         r.rep.P99,
		"max-ms":         r.rep.Max,
		"ack-p99-ms":     r.rep.AckP99,
		"cpu-ms/msg":     r.cpuPerMessage(),
		"stack-cores":    r.stackCPU() / r.window.Seconds(),
		"acked/s":        float64(r.rep.Acked) / r.window.Seconds(),
		"delivered/s":    float64(r.rep.Delivered) / r.window.Seconds(),
		"out-of-order":   float64(r.rep.OutOfOrder),
		"disconnects":    float64(r.rep.Disconnects),
		"expected-deliv": float64(r.rep.Expected),
	}
}

// runScenario runs the load client against s and samples the CPU of every
// stack process at the load client's "measure start" and "measure end".
func runScenario(b *testing.B, s *launcher.Stack, bin string, sc scenario) result {
	b.Helper()
	args := []string{"-url", s.GatewayURL, "-clients", strconv.Itoa(sc.clients), "-rooms", strconv.Itoa(sc.rooms),
		"-rate", strconv.FormatFloat(sc.rate, 'f', -1, 64), "-duration", sc.duration.String(), "-warmup", "5s"}
	res := result{sc: sc}
	var start, end usage
	var m0, m1 metricSample
	profiles := &sync.WaitGroup{}
	out := runLoadClient(b, bin, args, map[string]func(){
		"load: measure start": func() {
			m0 = scrapeApps(s)
			start = sampleUsage(s)
			profiles = profileSidecars(b, s, strings.ReplaceAll(sc.name, "/", "-")+"-"+s.Profile.Name, sc.duration-2*time.Second)
		},
		"load: measure end": func() { end = sampleUsage(s); m1 = scrapeApps(s) },
	})
	profiles.Wait()
	if err := json.Unmarshal(out, &res.rep); err != nil {
		b.Fatalf("load client report %q: %v", out, err)
	}
	if start.at.IsZero() || end.at.IsZero() {
		b.Fatalf("the load client never reported its measured window")
	}
	res.window = end.at.Sub(start.at)
	res.cpu = map[string]float64{}
	for name, v := range end.procs {
		res.cpu[name] = v - start.procs[name]
	}
	b.Logf("scenario %s on %s: %s", sc.name, s.Profile.Name, res.describe())
	b.Logf("  %s", end.since(start))
	b.Logf("  %s", describeMetrics(m0, m1))
	return res
}

// describe is a one-paragraph account of a result, with the CPU each
// process spent per acked message.
func (r result) describe() string {
	rep := r.rep
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d clients, %d rooms, %.0f msgs/s for %s: published %d, acked %d, refused %d %v, "+
		"delivered %d of %d (lost %d, dup %d, out of order %d, disconnects %d); latency p50 %.2f p90 %.2f p99 %.2f max %.2f ms; "+
		"ack p50 %.2f p99 %.2f ms; stack CPU %.3f ms/msg (%.2f cores); load avg %s",
		r.sc.clients, r.sc.rooms, r.sc.rate, r.sc.duration, rep.Published, rep.Acked, rep.Refused, rep.RefusedBy,
		rep.Delivered, rep.Expected, rep.Lost, rep.Duplicated, rep.OutOfOrder, rep.Disconnects,
		rep.P50, rep.P90, rep.P99, rep.Max, rep.AckP50, rep.AckP99, r.cpuPerMessage(), r.stackCPU()/r.window.Seconds(), loadavg())
	type row struct {
		name string
		sec  float64
	}
	var rows []row
	for n, v := range r.cpu {
		rows = append(rows, row{n, v})
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.name, b.name) })
	sb.WriteString("\n  CPU per acked message (ms):")
	for _, x := range rows {
		if rep.Acked > 0 {
			fmt.Fprintf(&sb, " %s %.3f;", x.name, 1000*x.sec/float64(rep.Acked))
		}
	}
	return sb.String()
}

// runLoadClient runs papoload with args, calling marks[line] when the
// client prints that line on stderr, and returns its stdout (the report).
func runLoadClient(b *testing.B, bin string, args []string, marks map[string]func()) []byte {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var tail []string
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if f, ok := marks[line]; ok {
				f()
			}
			if len(tail) > 50 {
				tail = tail[1:]
			}
			tail = append(tail, line)
			b.Log(line)
		}
	}()
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("papoload %s: %v\n%s\n%s", strings.Join(args, " "), err, strings.Join(tail, "\n"), stdout.Bytes())
	}
	return stdout.Bytes()
}

// findPeak steps the rate into 100 rooms of 10 up from 1,000 msgs/s by
// 500 until a step loses a message or its p99 exceeds 100 ms; the peak is
// the last step that held. When 1,000 msgs/s does not hold, it steps down
// by 250 until a rate does (the peak is then below 1,000). Each step runs
// 20 s on a fresh stack.
func findPeak(b *testing.B, bin string) map[string]float64 {
	peak := 0.0
	var last result
	try := func(rate float64) bool {
		s := startFanoutStack(b, "local")
		r := runScenario(b, s, bin, scenario{fmt.Sprintf("peak@%.0f", rate), 1000, 100, rate, 20 * time.Second})
		s.Stop()
		held := r.rep.Lost == 0 && r.rep.Refused == 0 && r.rep.Acked == r.rep.Published && r.rep.P99 <= 100
		if !held {
			b.Logf("peak: %.0f msgs/s does not hold (p99 %.2f ms, lost %d, refused %d, acked %d of %d)",
				rate, r.rep.P99, r.rep.Lost, r.rep.Refused, r.rep.Acked, r.rep.Published)
			return false
		}
		peak, last = rate, r
		return true
	}
	if try(1000) {
		for rate := 1500.0; rate <= 10000 && try(rate); rate += 500 {
		}
	} else {
		for rate := 750.0; rate > 0 && !try(rate); rate -= 250 {
		}
	}
	m := map[string]float64{"peak-msgs/s": peak}
	if peak > 0 {
		m["peak-p99-ms"] = last.rep.P99
		m["peak-cpu-ms/msg"] = last.cpuPerMessage()
	}
	return m
}

// idleConns is the idle-memory scenario's size: 500 users with 20 sockets
// each, through the gateway.
const (
	idleUsers        = 500
	idleConnsPerUser = 20
)

// idleMemory opens idleUsers*idleConnsPerUser sockets through the gateway
// and reports the growth of the resident sets of the gateway and the ws
// replicas per connection, after 60 s idle (every socket pinged twice).
func idleMemory(b *testing.B, bin string) map[string]float64 {
	s := startFanoutStack(b, "local")
	rss := func() map[string]int64 {
		m := map[string]int64{}
		for _, a := range append(s.Apps("gateway"), s.Apps("ws")...) {
			m[a.Name] = rssKiB(b, a.Pid())
		}
		return m
	}
	before := rss()
	var open map[string]int64
	args := []string{"-url", s.GatewayURL, "-idle", "-clients", strconv.Itoa(idleUsers), "-rooms", "5",
		"-conns-per-user", strconv.Itoa(idleConnsPerUser), "-duration", "60s", "-setup-concurrency", "64"}
	var atEnd map[string]int64
	out := runLoadClient(b, bin, args, map[string]func(){
		"load: measure start": func() { open = rss() },
		"load: measure end":   func() { atEnd = rss() },
	})
	var rep load.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		b.Fatalf("load client report %q: %v", out, err)
	}
	conns := float64(rep.Connections)
	m := map[string]float64{"connections": conns}
	var total float64
	for name, v := range atEnd {
		kib := float64(v-before[name]) / conns
		m[name+"-KiB/conn"] = kib
		total += kib
		b.Logf("%s: %d KiB before, %d KiB with %d sockets open, %d KiB after 60 s idle", name, before[name], open[name], rep.Connections, v)
	}
	m["KiB/conn"] = total
	return m
}
