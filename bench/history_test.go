package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/launcher"
)

const (
	historyEvents   = 600  // events in the room (≥ 500)
	historyRequests = 3000 // measured requests (≥ 2000)
	historyWarmup   = 200
	historyPage     = 50
)

// BenchmarkHistoryPage measures one 50-event history page through the whole
// path — gateway → its sidecar → message's sidecar → message → state store —
// as a client sees it: GET /api/v1/rooms/{id}/events?before=…&limit=50 on a
// room of 600 events, 3000 requests one after another (plus 200 of warm-up)
// over a kept-alive connection, every page checked to hold 50 ascending
// events. Reports p50, p99, max and mean in milliseconds.
func BenchmarkHistoryPage(b *testing.B) {
	for _, profile := range []string{"local", "redis", "rabbitmq-postgres"} {
		b.Run("profile="+profile, func(b *testing.B) {
			measured.once(b, func() map[string]float64 { return measureHistory(b, profile) })
		})
	}
}

func measureHistory(b *testing.B, profile string) map[string]float64 {
	s, h := seedHistory(b, profile)
	get := h.getter(s.GatewayURL, "")
	for i := range historyWarmup {
		if _, err := get(h.beforeAt(i)); err != nil {
			b.Fatal(err)
		}
	}
	load, before := loadavg(), sampleUsage(s)
	lat := make([]time.Duration, 0, historyRequests)
	start := time.Now()
	for i := range historyRequests {
		d, err := get(h.beforeAt(historyWarmup + i))
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
	}
	wall := time.Since(start)
	used := sampleUsage(s).since(before)
	p50, p99, maxD, mean := latencySummary(lat)
	b.Logf("history %s: %d requests of %d events in %s : p50 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms (load %s → %s; %s)",
		profile, len(lat), historyPage, wall.Round(time.Millisecond), ms(p50), ms(p99), ms(maxD), ms(mean), load, loadavg(), used)
	return map[string]float64{"p50-ms": ms(p50), "p99-ms": ms(p99), "max-ms": ms(maxD), "mean-ms": ms(mean)}
}

// BenchmarkHistoryHops splits the history page's path into its segments:
// the same request is sent, in turn, to the message app itself, to message
// through its own sidecar, through the gateway's sidecar, and through the
// gateway, interleaved so that every segment sees the same machine. The
// difference between two neighbours is what one hop costs.
func BenchmarkHistoryHops(b *testing.B) {
	measured.once(b, func() map[string]float64 {
		s, h := seedHistory(b, "local")
		msg := s.Apps("message")[0]
		gw := s.Apps("gateway")[0]
		invoke := func(daprPort int) string {
			return fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/message/method", daprPort)
		}
		hops := []struct {
			name string
			get  func(int64) (time.Duration, error)
		}{
			// Each hop presents the token its receiver checks: the app
			// API token to the app, the Dapr API token to a sidecar.
			{"message app", h.getter(msg.URL(), s.Tokens.App)},
			{"message sidecar → message", h.getter(invoke(msg.DaprHTTP), s.Tokens.Dapr)},
			{"gateway sidecar → message sidecar → message", h.getter(invoke(gw.DaprHTTP), s.Tokens.Dapr)},
			{"gateway → … → message", h.getter(s.GatewayURL, "")},
		}
		lat := make([][]time.Duration, len(hops))
		for i := range historyWarmup + historyRequests {
			for j, hop := range hops {
				d, err := hop.get(h.beforeAt(i))
				if err != nil {
					b.Fatalf("%s: %v", hop.name, err)
				}
				if i >= historyWarmup {
					lat[j] = append(lat[j], d)
				}
			}
		}
		out := map[string]float64{}
		for j, hop := range hops {
			p50, p99, maxD, mean := latencySummary(lat[j])
			b.Logf("%-45s p50 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms", hop.name+":", ms(p50), ms(p99), ms(maxD), ms(mean))
			out[fmt.Sprintf("hop%d-p50-ms", j)] = ms(p50)
			out[fmt.Sprintf("hop%d-p99-ms", j)] = ms(p99)
		}
		return out
	})
}

// historyRoom is a room seeded for history reads.
type historyRoom struct {
	b     *testing.B
	ctx   context.Context
	token string
	room  string
	last  int64
	hc    *http.Client
}

// seedHistory starts a stack of profile with one user and a public room of
// historyEvents messages.
func seedHistory(b *testing.B, profile string) (*launcher.Stack, *historyRoom) {
	s := startStack(b, profile, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	u := newUsers(b, s, "hist", 1)[0]
	room, err := u.CreateRoom(ctx, "history "+randomName(""), api.RoomPublic)
	if err != nil {
		b.Fatal(err)
	}
	ws := dialReplica(b, s, "ws-1", u)
	last := seedRoom(b, u, ws, room.ID, historyEvents)
	b.Logf("room %s holds %d events", room.ID, last)
	return s, &historyRoom{b: b, ctx: ctx, token: u.Token, room: room.ID, last: last,
		hc: &http.Client{Timeout: 10 * time.Second}}
}

// beforeAt walks the room's pages: every value in [51, last+1].
func (h *historyRoom) beforeAt(i int) int64 {
	span := h.last + 1 - historyPage
	return historyPage + 1 + int64(i*37)%span
}

// getter returns a function that reads the page below before from base
// (a URL the public API's paths are appended to), checks it and returns
// the time from the request written to the body read. A token, when
// given, goes in the dapr-api-token header.
func (h *historyRoom) getter(base, token string) func(before int64) (time.Duration, error) {
	return func(before int64) (time.Duration, error) {
		url := fmt.Sprintf("%s/api/v1/rooms/%s/events?before=%d&limit=%d", base, h.room, before, historyPage)
		req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+h.token)
		if token != "" {
			req.Header.Set("dapr-api-token", token)
		}
		start := time.Now()
		resp, err := h.hc.Do(req)
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("before=%d: %s %s", before, resp.Status, body)
		}
		return took, checkPage(body, before)
	}
}

// checkPage checks that body is the page of historyPage events just below
// before, ascending.
func checkPage(body []byte, before int64) error {
	var page api.EventsResponse
	if err := json.Unmarshal(body, &page); err != nil {
		return err
	}
	if len(page.Events) != historyPage || page.Events[0].Seq != before-historyPage || page.Events[historyPage-1].Seq != before-1 {
		return fmt.Errorf("before=%d: page of %d events is not the %d just below", before, len(page.Events), historyPage)
	}
	return nil
}
