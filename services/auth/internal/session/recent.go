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
const recentKey = "revocations|recent"

type recentList struct {
	Revocations []events.SessionRevoked `json:"revocations"`
}

// remember adds ev to the recent revocations, dropping the expired ones.
func (m *Manager) remember(ctx context.Context, ev events.SessionRevoked) error {
	for attempt := 0; ; attempt++ {
		var l recentList
		it, err := m.store.Get(ctx, recentKey)
		found := err == nil
		if err != nil && !errors.Is(err, statestore.ErrNotFound) {
			return err
		}
		if found {
			if err := json.Unmarshal(it.Value, &l); err != nil {
				return fmt.Errorf("decode %s: %w", recentKey, err)
			}
		}
		now := m.Now()
		l.Revocations = slices.DeleteFunc(l.Revocations, func(r events.SessionRevoked) bool {
			return !r.Until.After(now) || r.SessionID == ev.SessionID
		})
		l.Revocations = append(l.Revocations, ev)
		b, _ := json.Marshal(l)
		// The key outlives its newest entry a little, so an idle one goes.
		op := statestore.Op{Key: recentKey, Value: b, TTL: max(ev.Until.Sub(now), 0) + time.Minute}
		if found {
			op.ETag = it.ETag
		} else {
			op.IfAbsent = true
		}
		err = m.store.Write(ctx, op)
		if errors.Is(err, statestore.ErrConflict) && attempt < 50 {
			continue
		}
		if err != nil {
			return fmt.Errorf("remember revocation of session %s: %w", ev.SessionID, err)
		}
		return nil
	}
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
