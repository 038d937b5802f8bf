package bench

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/launcher"
)

const (
	latencyWarmup  = 2 * time.Second
	latencyMeasure = 30 * time.Second
	latencyDrain   = 15 * time.Second
)

// BenchmarkCrossReplicaLatency measures how long a message takes from a
// sender on ws-1 to a receiver on ws-2 (send frame written → event frame
// read, one clock, one process), at a steady rate for 2 s of warm-up then
// 30 s counted: ws-1 → messages.submitted → message → state store →
// room.events → ws-2. At 50 messages per second, then at 200 (the brief's rate),
// each in a fresh room. A rate the system cannot
// sustain shows up as sends refused with too_many_pending (the ws service
// caps unacknowledged sends per connection at 512): the run stops there and
// says so instead of reporting a latency.
func BenchmarkCrossReplicaLatency(b *testing.B) {
	measured.once(b, func() map[string]float64 {
		s := startStack(b, "local", 1)
		users := newUsers(b, s, "lat", 2)
		out := map[string]float64{}
		for _, rate := range []int{50, 200} {
			r := runLatency(b, s, users[0], users[1], rate)
			if !r.sustained {
				out["sustained-at-"+strconv.Itoa(rate)] = 0
				continue
			}
			p := "at" + strconv.Itoa(rate) + "-"
			out[p+"p50-ms"], out[p+"p99-ms"], out[p+"max-ms"] = ms(r.p50), ms(r.p99), ms(r.max)
		}
		return out
	})
}

type latencyResult struct {
	sustained     bool
	p50, p99, max time.Duration
}

func runLatency(b *testing.B, s *launcher.Stack, sender, receiver *user, rate int) latencyResult {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	room, err := sender.CreateRoom(ctx, "latency "+randomName(""), api.RoomPublic)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := receiver.JoinRoom(ctx, room.ID); err != nil {
		b.Fatal(err)
	}
	out := dialReplica(b, s, "ws-1", sender)
	in := dialReplica(b, s, "ws-2", receiver)
	defer out.Close()
	defer in.Close()

	total := int((latencyWarmup + latencyMeasure).Seconds()) * rate
	warm := int(latencyWarmup.Seconds()) * rate
	sentAt := make([]atomic.Int64, total)
	gotAt := make([]atomic.Int64, total)
	prefix := randomName("lat-") + "-"

	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var readers sync.WaitGroup
	readers.Add(2)
	// The sender's own frames (acks, its copy of each event) are read so
	// its buffer never fills; an error frame means the rate is not held.
	refused := make(chan api.ServerFrame, 1)
	go func() {
		defer readers.Done()
		for {
			f, err := out.Read(readCtx)
			if err != nil {
				return
			}
			if f.Type == api.FrameError {
				select {
				case refused <- f:
				default:
				}
			}
		}
	}()
	var received atomic.Int64
	all := make(chan struct{})
	go func() {
		defer readers.Done()
		for {
			f, err := in.Read(readCtx)
			if err != nil {
				return
			}
			if f.Type != api.FrameEvent || f.Event.RoomID != room.ID || !strings.HasPrefix(f.Event.ClientID, prefix) {
				continue
			}
			n, err := strconv.Atoi(strings.TrimPrefix(f.Event.ClientID, prefix))
			if err == nil && n >= 0 && n < total && gotAt[n].CompareAndSwap(0, time.Now().UnixNano()) {
				if received.Add(1) == int64(total) {
					close(all)
				}
			}
		}
	}()

	load, before := loadavg(), sampleUsage(s)
	// Message n leaves at start + n/rate: a late send (a busy machine)
	// is followed at once by the next ones, so the average rate holds.
	interval := time.Second / time.Duration(rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	sent := 0
	var refusal *api.ServerFrame
send:
	for n := range total {
		timer.Reset(time.Until(start.Add(time.Duration(n) * interval)))
		select {
		case f := <-refused:
			refusal = &f
			break send
		case <-timer.C:
		}
		sentAt[n].Store(time.Now().UnixNano())
		if err := out.Send(api.ClientFrame{Type: api.FrameSend, RoomID: room.ID, ClientID: prefix + strconv.Itoa(n),
			Text: "latency probe " + strconv.Itoa(n)}); err != nil {
			b.Fatalf("send %d: %v (the socket ended with: %v)", n, err, out.Err())
		}
		sent++
	}
	sending := time.Since(start)
	used := sampleUsage(s).since(before)
	if refusal != nil {
		b.Logf("latency ws-1 → ws-2 at %d msgs/s: NOT SUSTAINED — after %d sends in %s the sender was refused (%s: %s) with %d delivered to the receiver (load %s → %s; %s)",
			rate, sent, sending.Round(time.Millisecond), refusal.Code, refusal.Message, received.Load(), load, loadavg(), used)
		return latencyResult{}
	}
	select {
	case <-all:
	case <-time.After(latencyDrain):
	}
	stopReading()
	readers.Wait()
	if got := received.Load(); got < int64(total) {
		b.Fatalf("receiver got %d of %d messages within %s of the last send", got, total, latencyDrain)
	}
	lat := make([]time.Duration, 0, total-warm)
	for n := warm; n < total; n++ {
		lat = append(lat, time.Duration(gotAt[n].Load()-sentAt[n].Load()))
	}
	p50, p99, maxD, mean := latencySummary(lat)
	b.Logf("latency ws-1 → ws-2 at %d msgs/s: %d messages at %.1f msgs/s over %s, %d counted after %s warm-up: p50 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms (load %s → %s; %s)",
		rate, total, float64(total)/sending.Seconds(), sending.Round(time.Millisecond), len(lat), latencyWarmup,
		ms(p50), ms(p99), ms(maxD), ms(mean), load, loadavg(), used)
	return latencyResult{sustained: true, p50: p50, p99: p99, max: maxD}
}
