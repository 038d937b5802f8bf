package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/papochat/papo/launcher"
)

// metricSample is a scrape of the stack's apps: every sample line (name
// with labels) and its value, summed over replicas of one app-id.
type metricSample map[string]float64

// scrapeApps reads /metrics of every app of s, keeping the papo_ series
// with _sum, _count or _total, keyed "<app-id> <series>".
func scrapeApps(s *launcher.Stack) metricSample {
	out := metricSample{}
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, a := range s.Apps("") {
		if a.MetricsPort == 0 {
			continue
		}
		resp, err := hc.Get(a.MetricsURL())
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "papo_") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				continue
			}
			series := line[:i]
			name := series
			if j := strings.IndexByte(series, '{'); j >= 0 {
				name = series[:j]
			}
			if !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") && !strings.HasSuffix(name, "_total") {
				continue
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				continue
			}
			out[a.AppID+" "+series] += v
		}
		resp.Body.Close()
	}
	return out
}

// describeMetrics says what the window's counters show about where time
// went: the message writer's rounds and stages, the submit calls and
// the delivery latency in ws.
func describeMetrics(before, after metricSample) string {
	// total sums every series of app's metric name whose labels hold
	// match (all of them when match is "").
	total := func(m metricSample, app, name, match string) float64 {
		var t float64
		for k, v := range m {
			series, ok := strings.CutPrefix(k, app+" "+name)
			if !ok || (series != "" && series[0] != '{') || !strings.Contains(series, match) {
				continue
			}
			t += v
		}
		return t
	}
	d := func(app, name, match string) float64 {
		return total(after, app, name, match) - total(before, app, name, match)
	}
	avg := func(app, name, match string) string {
		n := d(app, name+"_count", match)
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f ms (n=%.0f)", 1000*d(app, name+"_sum", match)/n, n)
	}
	var sb strings.Builder
	rounds := d("message", "papo_message_round_submissions_count", "")
	if rounds > 0 {
		fmt.Fprintf(&sb, "message: %.0f rounds, %.1f submissions each, round %s", rounds,
			d("message", "papo_message_round_submissions_sum", "")/rounds, avg("message", "papo_message_round_duration_seconds", ""))
	}
	for _, stage := range []string{"read", "decide", "commit", "announce", "materialize"} {
		fmt.Fprintf(&sb, "; %s %s", stage, avg("message", "papo_message_round_stage_duration_seconds", `stage="`+stage+`"`))
	}
	for _, stage := range []string{"announce", "materialize"} {
		if n := d("message", "papo_message_stage_rounds_count", `stage="`+stage+`"`); n > 0 {
			fmt.Fprintf(&sb, "; %s takes %.1f rounds", stage, d("message", "papo_message_stage_rounds_sum", `stage="`+stage+`"`)/n)
		}
	}
	fmt.Fprintf(&sb, "; head conflicts %.0f", d("message", "papo_message_head_conflicts_total", ""))
	// The message service's state store calls by operation (what the
	// store work per message is made of), and how materializations went.
	fmt.Fprintf(&sb, "\n  message store calls:")
	for _, op := range []string{"get", "bulk_get", "save", "delete", "transact"} {
		fmt.Fprintf(&sb, " %s %.0f", op, d("message", "papo_state_operation_duration_seconds_count", `operation="`+op+`"`))
	}
	fmt.Fprintf(&sb, "; materializations rode %.0f, alone %.0f; member rereads %.0f",
		d("message", "papo_message_materializations_total", `how="rode"`), d("message", "papo_message_materializations_total", `how="alone"`),
		d("message", "papo_message_member_rereads_total", ""))
	fmt.Fprintf(&sb, "\n  ws: submit call %s; delivery latency %s; fan-out lag %s",
		avg("ws", "papo_ws_submit_duration_seconds", ""), avg("ws", "papo_ws_delivery_latency_seconds", ""), avg("ws", "papo_ws_fanout_lag_seconds", ""))
	return sb.String()
}
