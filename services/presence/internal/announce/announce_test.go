package announce_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"

	"github.com/papochat/papo/services/presence/internal/announce"
	"github.com/papochat/papo/services/presence/internal/tracker"
)

type rooms map[string][]string

func (r rooms) UserRooms(_ context.Context, uid string) ([]string, error) {
	if uid == "broken" {
		return nil, errors.New("message service down")
	}
	return r[uid], nil
}

type publisher struct {
	mu      sync.Mutex
	batches []events.SignalBatch
}

func (p *publisher) Publish(_ context.Context, b events.SignalBatch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches = append(p.batches, b)
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestAnnounceCarriesTheUsersRooms(t *testing.T) {
	pub := &publisher{}
	a := announce.New(rooms{"alice": {"r1", "r2"}}, pub, quiet())
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a.Announce(context.Background(), []tracker.Change{
		{UserID: "alice", Status: api.Offline, LastSeen: at},
		{UserID: "loner", Status: api.Online, LastSeen: at},  // no room: nobody to tell
		{UserID: "broken", Status: api.Online, LastSeen: at}, // rooms unknown: dropped, others go on
	})
	if len(pub.batches) != 1 || len(pub.batches[0].Signals) != 1 {
		t.Fatalf("got %+v, want one batch with alice's signal", pub.batches)
	}
	s := pub.batches[0].Signals[0]
	if s.Kind != events.SignalPresence || s.UserID != "alice" || s.Status != api.Offline ||
		s.LastSeen == nil || !s.LastSeen.Equal(at) || !slices.Equal(s.RoomIDs, []string{"r1", "r2"}) {
		t.Fatalf("signal = %+v", s)
	}
}

func TestAnnounceSplitsLargeBatches(t *testing.T) {
	pub := &publisher{}
	r := rooms{}
	var changes []tracker.Change
	for i := range 250 {
		uid := fmt.Sprintf("u%d", i)
		r[uid] = []string{"room"}
		changes = append(changes, tracker.Change{UserID: uid, Status: api.Offline, LastSeen: time.Now()})
	}
	announce.New(r, pub, quiet()).Announce(context.Background(), changes)
	var sizes []int
	for _, b := range pub.batches {
		sizes = append(sizes, len(b.Signals))
	}
	if !slices.Equal(sizes, []int{100, 100, 50}) {
		t.Fatalf("batch sizes %v, want [100 100 50]", sizes)
	}
}
