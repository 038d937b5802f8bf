package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// recentKey holds the revocations whose access tokens may still be alive
// (until in the future). A service that starts reads them
// (GET /internal/v1/revocations) before it trusts its revocation set: the
// notices on sessions.revoked reach only the replicas running when they
// are published.
const recentKey = "revocations/recent"

type recentList struct {
	Revocations []events.SessionRevoked `json:"revocations"`
}

// remember adds ev to the recent revocations, dropping the expired ones.
func (m *Manager) remember(ctx context.Context, ev events.SessionRevoked) error {
	now := m.Now()
	// The key outlives its newest entry a little, so an idle one goes.
	ttl := max(ev.Until.Sub(now), 0) + time.Minute
	err := statestore.Update(ctx, m.store, recentKey, ttl, func(l *recentList, _ bool) bool {
		l.Revocations = slices.DeleteFunc(l.Revocations, func(r events.SessionRevoked) bool {
			return !r.Until.After(now) || r.SessionID == ev.SessionID
		})
		l.Revocations = append(l.Revocations, ev)
		return true
	})
	if err != nil {
		return fmt.Errorf("remember revocation of session %s: %w", ev.SessionID, err)
	}
	return nil
}

// Recent returns the revocations whose access tokens may still be alive.
func (m *Manager) Recent(ctx context.Context) ([]events.SessionRevoked, error) {
	it, err := m.store.Get(ctx, recentKey)
	if errors.Is(err, statestore.ErrNotFound) {
		return []events.SessionRevoked{}, nil
	}
	if err != nil {
		return nil, err
	}
	var l recentList
	if err := json.Unmarshal(it.Value, &l); err != nil {
		return nil, fmt.Errorf("decode %s: %w", recentKey, err)
	}
	now := m.Now()
	out := []events.SessionRevoked{}
	for _, r := range l.Revocations {
		if r.Until.After(now) {
			out = append(out, r)
		}
	}
	return out, nil
}
