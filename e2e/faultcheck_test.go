package e2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/papochat/papo/api"
)

// The checker, in the style of a Jepsen total-queue test: what the
// clients were told (acks) and saw (events) against what the room logs
// hold at the end, once every send was acked and every receiver caught up.

// check returns every violation of papo's delivery promise.
func check(history map[string][]api.Event, clients []*chatClient) []string {
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < 50 {
			problems = append(problems, fmt.Sprintf(format, args...))
		} else if len(problems) == 50 {
			problems = append(problems, "… (more)")
		}
	}
	// The room logs: seqs from 1, no gap, and each (sender, client_id)
	// at most once.
	type key struct{ sender, clientID string }
	stored := map[key][]api.Event{}
	for room, evs := range history {
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				add("room %s: history has seq %d at position %d: not gap-free", room, e.Seq, i+1)
				break
			}
			if e.Type == api.EventMessage && e.ClientID != "" {
				k := key{e.SenderID, e.ClientID}
				stored[k] = append(stored[k], e)
			}
		}
	}
	for k, evs := range stored {
		if len(evs) > 1 {
			add("%s by %s is in history %d times (seqs %v)", k.clientID, k.sender, len(evs), seqsOf(evs))
		}
	}
	for _, c := range clients {
		c.mu.Lock()
		problems = append(problems, c.problems...)
		// Every send acked, and in history exactly once, at its acked seq.
		for id, o := range c.sent {
			evs := stored[key{c.u.ID, id}]
			switch {
			case o.ackAt.IsZero():
				add("%s: %s (sent %d times) was never acked; in history %d times", c.name, id, o.attempts, len(evs))
			case len(evs) == 0:
				add("%s: %s was acked as seq %d but is not in history: lost", c.name, id, o.seq)
			case evs[0].Seq != o.seq || evs[0].RoomID != o.room:
				add("%s: %s was acked as %s/%d but is %s/%d in history", c.name, id, o.room, o.seq, evs[0].RoomID, evs[0].Seq)
			case evs[0].Text != o.text:
				add("%s: %s is stored with text %q, sent %q", c.name, id, evs[0].Text, o.text)
			}
		}
		// Every receiver saw its room's events after its start, once each,
		// in order, as they are stored.
		for room, start := range c.start {
			log := history[room]
			got := c.received[room]
			want := int64(len(log)) - start
			if int64(len(got)) != want {
				add("%s: room %s: received %d events after seq %d, history has %d", c.name, room, len(got), start, want)
			}
			for i, d := range got {
				seq := start + int64(i) + 1
				if d.seq != seq {
					add("%s: room %s: event %d of its stream is seq %d, want %d", c.name, room, i+1, d.seq, seq)
					break
				}
				if seq <= int64(len(log)) {
					if e := log[seq-1]; e.Type != d.typ || e.ClientID != d.clientID {
						add("%s: room %s: seq %d received as %s/%s, stored as %s/%s", c.name, room, seq, d.typ, d.clientID, e.Type, e.ClientID)
					}
				}
			}
		}
		c.mu.Unlock()
	}
	// Nothing in history that no client sent (the suite's rooms hold only
	// its own messages).
	sent := map[key]bool{}
	for _, c := range clients {
		c.mu.Lock()
		for id := range c.sent {
			sent[key{c.u.ID, id}] = true
		}
		c.mu.Unlock()
	}
	for k := range stored {
		if !sent[k] {
			add("%s by %s is in history but was never sent", k.clientID, k.sender)
		}
	}
	return problems
}

func seqsOf(evs []api.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// faultRun is one fault as the suite caused it.
type faultRun struct {
	name   string
	at     time.Time
	took   time.Duration // the command itself (a broker restart)
	err    error
	window time.Duration // until the next fault, or the end of sending
}

// cost is what one fault cost the clients, measured in its window.
type cost struct {
	fault faultRun
	// statusDown: from the fault to GET /api/v1/status showing every
	// service up again (0 when it never showed one down).
	statusDown time.Duration
	down       string // the services it showed down
	// restDown: per REST route, the span from its first to its last
	// failed probe (5xx or no answer) in the window.
	restDown map[string]time.Duration
	// maxAck: the longest a send first sent in the window waited for its
	// ack; resent: how many of them were sent more than once.
	maxAck       time.Duration
	sends        int
	resent       int
	maxStall     time.Duration // longest time a receiver got no event
	drops        int           // sockets that dropped
	maxReconnect time.Duration // from a drop to the next socket's hello
}

// measure computes the cost of each fault.
func measure(runs []faultRun, samples []sample, clients []*chatClient) []cost {
	var out []cost
	for _, r := range runs {
		from, to := r.at, r.at.Add(r.window)
		k := cost{fault: r, restDown: map[string]time.Duration{}}
		var firstBad, lastBad = map[string]time.Time{}, map[string]time.Time{}
		var downSince time.Time
		downs := map[string]bool{}
		for _, sm := range samples {
			if sm.at.Before(from) || !sm.at.Before(to) {
				continue
			}
			if sm.what == "status" {
				if !sm.ok {
					if downSince.IsZero() {
						downSince = sm.at
					}
					for _, d := range strings.Split(sm.note, ",") {
						downs[d] = true
					}
				} else if !downSince.IsZero() && k.statusDown == 0 {
					k.statusDown = sm.at.Sub(from)
				}
				continue
			}
			if !sm.ok {
				if firstBad[sm.what].IsZero() {
					firstBad[sm.what] = sm.at
				}
				lastBad[sm.what] = sm.at
			}
		}
		if !downSince.IsZero() && k.statusDown == 0 {
			k.statusDown = to.Sub(from) // still down at the window's end
		}
		for d := range downs {
			k.down += d + " "
		}
		k.down = strings.TrimSpace(k.down)
		for route, t := range firstBad {
			k.restDown[route] = lastBad[route].Sub(t) + 100*time.Millisecond // one probe period
		}
		for _, c := range clients {
			c.mu.Lock()
			for _, o := range c.sent {
				if o.firstSent.Before(from) || !o.firstSent.Before(to) {
					continue
				}
				k.sends++
				if o.attempts > 1 {
					k.resent++
				}
				if !o.ackAt.IsZero() {
					k.maxAck = max(k.maxAck, o.ackAt.Sub(o.firstSent))
				}
			}
			for _, ds := range c.received {
				prev := from
				for _, d := range ds {
					if d.at.Before(from) {
						continue
					}
					if !d.at.Before(to) {
						break
					}
					k.maxStall = max(k.maxStall, d.at.Sub(prev))
					prev = d.at
				}
			}
			for _, sl := range c.sockets {
				if sl.dropped.Before(from) || !sl.dropped.Before(to) {
					continue
				}
				k.drops++
				if !sl.back.IsZero() {
					k.maxReconnect = max(k.maxReconnect, sl.back.Sub(sl.dropped))
				}
			}
			c.mu.Unlock()
		}
		out = append(out, k)
	}
	return out
}

// totals of a run, for the report.
type totals struct {
	profile                string
	clients, rooms         int
	rate                   float64 // messages per second, all clients
	duration               time.Duration
	sent, resends, stored  int
	deliveries             int
	ackP50, ackP99, ackMax time.Duration
	problems               []string
	drainTook, catchUpTook time.Duration
}

func summarize(t *totals, history map[string][]api.Event, clients []*chatClient) {
	var acks []time.Duration
	for _, c := range clients {
		c.mu.Lock()
		for _, o := range c.sent {
			t.sent++
			t.resends += o.attempts - 1
			if !o.ackAt.IsZero() {
				acks = append(acks, o.ackAt.Sub(o.firstSent))
			}
		}
		for _, ds := range c.received {
			t.deliveries += len(ds)
		}
		c.mu.Unlock()
	}
	for _, evs := range history {
		for _, e := range evs {
			if e.Type == api.EventMessage {
				t.stored++
			}
		}
	}
	slices.Sort(acks)
	if n := len(acks); n > 0 {
		t.ackP50, t.ackP99, t.ackMax = acks[n/2], acks[n*99/100], acks[n-1]
	}
}

// report renders a run as Markdown.
func report(t totals, costs []cost) string {
	var b strings.Builder
	ms := func(d time.Duration) string {
		if d == 0 {
			return "—"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	fmt.Fprintf(&b, "## Fault suite, profile %s\n\n", t.profile)
	fmt.Fprintf(&b, "%d clients in %d rooms sending %.0f msgs/s for %s through the gateway; %d faults.\n\n",
		t.clients, t.rooms, t.rate, t.duration.Round(time.Second), len(costs))
	verdict := "**every acked message is in history exactly once, seqs are gap-free, every receiver saw every message once and in order**"
	if len(t.problems) > 0 {
		verdict = fmt.Sprintf("**%d violations** (below)", len(t.problems))
	}
	fmt.Fprintf(&b, "Result: %s. Sent %d messages (%d resends of the same client_id), %d stored, %d deliveries. Ack latency p50 %s, p99 %s, max %s. After sending stopped, the last acks took %s and every receiver had caught up %s later.\n\n",
		verdict, t.sent, t.resends, t.stored, t.deliveries, ms(t.ackP50), ms(t.ackP99), ms(t.ackMax), ms(t.drainTook), ms(t.catchUpTook))
	b.WriteString("| fault | status down | REST 5xx (rooms / devices / me) | longest wait for an ack | sends resent | longest delivery gap | sockets dropped | longest reconnect + resume |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, k := range costs {
		name := k.fault.name
		if k.fault.err != nil {
			name += " (failed: " + k.fault.err.Error() + ")"
		} else if k.fault.took > time.Second {
			name += fmt.Sprintf(" (took %s)", k.fault.took.Round(100*time.Millisecond))
		}
		down := ms(k.statusDown)
		if k.down != "" {
			down += " (" + k.down + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s / %s / %s | %s | %d of %d | %s | %d | %s |\n", name, down,
			ms(k.restDown["/api/v1/rooms"]), ms(k.restDown["/api/v1/devices"]), ms(k.restDown["/api/v1/me"]),
			ms(k.maxAck), k.resent, k.sends, ms(k.maxStall), k.drops, ms(k.maxReconnect))
	}
	if len(t.problems) > 0 {
		b.WriteString("\nViolations:\n\n")
		sort.Strings(t.problems)
		for _, p := range t.problems {
			b.WriteString("* " + p + "\n")
		}
	}
	return b.String()
}
