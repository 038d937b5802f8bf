// Package announce tells ws replicas about presence changes: for each
// change it asks the message service for the user's rooms and publishes a
// presence signal on the fan-out topic, so every replica can tell its
// connections that share one of those rooms.
package announce

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/invoke"

	"github.com/papochat/papo/services/presence/internal/tracker"
)

// Rooms lists the rooms a user belongs to.
type Rooms interface {
	UserRooms(ctx context.Context, uid string) ([]string, error)
}

// Publisher publishes one signal batch on the signals topic.
type Publisher interface {
	Publish(ctx context.Context, batch events.SignalBatch) error
}

// maxBatch bounds the signals in one published message.
const maxBatch = 100

// lookups bounds concurrent room lookups when many users change at once
// (a ws replica died).
const lookups = 8

// Announcer implements tracker.Notifier.
type Announcer struct {
	rooms Rooms
	pub   Publisher
	log   *slog.Logger
	// transitions count changes by the status they went to.
	online, offline, other prometheus.Counter
}

// WithMetrics counts the transitions the Announcer is told of
// (papo_presence_transitions_total by status) on reg.
func (a *Announcer) WithMetrics(reg prometheus.Registerer) *Announcer {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "papo_presence_transitions_total",
		Help: "Presence changes of users (their first socket opened, or the grace after their last one ended), by new status.",
	}, []string{"status"})
	reg.MustRegister(vec)
	a.online, a.offline, a.other = vec.WithLabelValues(api.Online), vec.WithLabelValues(api.Offline), vec.WithLabelValues("other")
	return a
}

// New returns an Announcer.
func New(rooms Rooms, pub Publisher, log *slog.Logger) *Announcer {
	return &Announcer{rooms: rooms, pub: pub, log: log}
}

// Announce implements tracker.Notifier. Signals are ephemeral: a failed
// lookup or publish is logged and dropped, since the query API stays
// right and a stale dot is corrected by the next change.
func (a *Announcer) Announce(ctx context.Context, changes []tracker.Change) {
	if a.online != nil {
		for _, c := range changes {
			switch c.Status {
			case api.Online:
				a.online.Inc()
			case api.Offline:
				a.offline.Inc()
			default:
				a.other.Inc()
			}
		}
	}
	signals := make([]*events.Signal, len(changes))
	sem := make(chan struct{}, lookups)
	var wg sync.WaitGroup
	for i, c := range changes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rooms, err := a.rooms.UserRooms(ctx, c.UserID)
			if err != nil {
				a.log.WarnContext(ctx, "presence change not announced: rooms unknown", "user_id", c.UserID, "status", c.Status, "err", err)
				return
			}
			if len(rooms) == 0 {
				return // nobody shares a room with the user
			}
			seen := c.LastSeen.UTC()
			signals[i] = &events.Signal{Kind: events.SignalPresence, UserID: c.UserID, Status: c.Status, LastSeen: &seen, RoomIDs: rooms}
		}()
	}
	wg.Wait()
	var batch events.SignalBatch
	flush := func() {
		if len(batch.Signals) == 0 {
			return
		}
		if err := a.pub.Publish(ctx, batch); err != nil {
			a.log.WarnContext(ctx, "presence changes not announced", "signals", len(batch.Signals), "err", err)
		}
		batch = events.SignalBatch{}
	}
	for _, s := range signals {
		if s == nil {
			continue
		}
		batch.Signals = append(batch.Signals, *s)
		if len(batch.Signals) == maxBatch {
			flush()
		}
	}
	flush()
}

// MessageRooms asks the message service (app-id "message") for a user's
// rooms through Dapr service invocation.
type MessageRooms struct {
	inv   *invoke.Client
	appID string
}

// NewMessageRooms returns Rooms backed by the message service.
func NewMessageRooms(inv *invoke.Client) *MessageRooms {
	return &MessageRooms{inv: inv, appID: "message"}
}

// roomsResponse is the answer of GET /internal/v1/users/{uid}/rooms.
type roomsResponse struct {
	Rooms []api.RoomCursor `json:"rooms"`
}

// UserRooms implements Rooms.
func (m *MessageRooms) UserRooms(ctx context.Context, uid string) ([]string, error) {
	var resp roomsResponse
	path := "/internal/v1/users/" + url.PathEscape(uid) + "/rooms"
	if err := m.inv.Do(ctx, m.appID, http.MethodGet, path, nil, nil, &resp); err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", uid, err)
	}
	ids := make([]string, len(resp.Rooms))
	for i, r := range resp.Rooms {
		ids[i] = r.RoomID
	}
	return ids, nil
}
