package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
	"github.com/papochat/papo/launcher"
)

const (
	appendSenders = 8 // users, one connection each, half on ws-1, half on ws-2
	appendWindow  = 64
	appendWarmup  = 3 * time.Second
	appendMeasure = 20 * time.Second
	appendDrain   = 60 * time.Second
	spreadRooms   = 100
)

// BenchmarkAppends measures appends per second end to end: 8 users, each
// on one WebSocket (4 on ws-1, 4 on ws-2), send as fast as their acks come
// back (at most 64 unacknowledged each), for 3 s of warm-up then 20 s
// counted; an ack means the message service appended the event to the room
// log and published it, and the sender's replica saw it come back. Once
// into one hot room that all 8 share, once spread over 100 rooms (each
// sender walks the rooms in turn), with one and with two message replicas.
// After the run, the rooms' logs must hold every acknowledged message.
func BenchmarkAppends(b *testing.B) {
	for _, replicas := range []int{1, 2} {
		b.Run("message-replicas="+strconv.Itoa(replicas), func(b *testing.B) {
			measured.once(b, func() map[string]float64 { return measureAppends(b, replicas) })
		})
	}
}

func measureAppends(b *testing.B, replicas int) map[string]float64 {
	s := startStack(b, "local", replicas)
	users := newUsers(b, s, "app", appendSenders)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	hot := createRooms(b, ctx, users, 1)
	spread := createRooms(b, ctx, users, spreadRooms)
	conns := make([]*client.WS, len(users))
	for i, u := range users {
		conns[i] = dialReplica(b, s, fmt.Sprintf("ws-%d", i%2+1), u)
	}
	out := map[string]float64{}
	for _, c := range []struct {
		name  string
		rooms []string
	}{{"hot", hot}, {"spread100", spread}} {
		rate := runAppends(b, s, users, conns, c.name, c.rooms, replicas)
		out[c.name+"-acks/s"] = rate
	}
	return out
}

// createRooms makes n public rooms, owned by users[0], that every user joins.
func createRooms(b *testing.B, ctx context.Context, users []*user, n int) []string {
	b.Helper()
	rooms := make([]string, n)
	for i := range rooms {
		r, err := users[0].CreateRoom(ctx, "load "+randomName(""), api.RoomPublic)
		if err != nil {
			b.Fatal(err)
		}
		rooms[i] = r.ID
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for _, u := range users[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range rooms {
				if _, err := u.JoinRoom(ctx, r); err != nil {
					errs <- fmt.Errorf("%s joins %s: %w", u.Username, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return rooms
}

func runAppends(b *testing.B, s *launcher.Stack, users []*user, conns []*client.WS, name string, rooms []string, replicas int) float64 {
	ctx := context.Background()
	lastSeqs := func() int64 {
		var sum int64
		for _, r := range rooms {
			page, err := users[0].EventsAfter(ctx, r, 0, 1)
			if err != nil {
				b.Fatal(err)
			}
			sum += page.LastSeq
		}
		return sum
	}
	before := lastSeqs()

	start := time.Now()
	countFrom, sendUntil := start.Add(appendWarmup), start.Add(appendWarmup+appendMeasure)
	runCtx, cancel := context.WithDeadline(ctx, sendUntil.Add(appendDrain))
	defer cancel()
	load, used := loadavg(), sampleUsage(s)
	var inWindow, sentTotal, ackedTotal atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := randomName(name + "-")
			sent, acked, err := pump(runCtx, ws, appendWindow, func(n int) (api.ClientFrame, bool) {
				room := rooms[(i*13+n)%len(rooms)]
				return api.ClientFrame{Type: api.FrameSend, RoomID: room, ClientID: prefix + "-" + strconv.Itoa(n),
					Text: "load message " + strconv.Itoa(n) + " from sender " + strconv.Itoa(i)}, time.Now().Before(sendUntil)
			}, func(api.ServerFrame) {
				if now := time.Now(); !now.Before(countFrom) && now.Before(sendUntil) {
					inWindow.Add(1)
				}
			})
			sentTotal.Add(int64(sent))
			ackedTotal.Add(int64(acked))
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	usedDesc := sampleUsage(s).since(used)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if sentTotal.Load() != ackedTotal.Load() {
		b.Fatalf("%s: %d sent, only %d acknowledged within %s after the run", name, sentTotal.Load(), ackedTotal.Load(), appendDrain)
	}
	persisted := lastSeqs() - before
	if persisted != ackedTotal.Load() {
		b.Fatalf("%s: %d acknowledged but the room logs grew by %d events", name, ackedTotal.Load(), persisted)
	}
	rate := float64(inWindow.Load()) / appendMeasure.Seconds()
	b.Logf("appends %s, message replicas %d: %.0f acks/s over %s (%d rooms, %d senders, %d in total, all persisted; load %s → %s; %s)",
		name, replicas, rate, appendMeasure, len(rooms), len(conns), ackedTotal.Load(), load, loadavg(), usedDesc)
	return rate
}
