package tracker

import (
	"context"
	"time"

	"github.com/papochat/papo/api"
)

// settle turns a user whose grace ran out offline. It returns the change
// to announce, if any, and a later deadline when a newer disconnect
// extended the grace (nil when the pending entry can go).
func (t *Tracker) settle(ctx context.Context, uid string, now time.Time) (*Change, *time.Time, error) {
	var change *Change
	var later *time.Time
	err := t.updateUser(ctx, uid, func(rec *userRecord, found bool) bool {
		change, later = nil, nil
		if !found || rec.Status != api.Online || len(rec.Replicas) > 0 || rec.OfflineAt == nil {
			// Reconnected (or already offline): nothing to announce.
			return false
		}
		if now.Before(*rec.OfflineAt) {
			later = rec.OfflineAt
			return false
		}
		rec.Status, rec.OfflineAt = api.Offline, nil
		change = &Change{UserID: uid, Status: api.Offline, LastSeen: derefOr(rec.LastSeen, now)}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	return change, later, nil
}

// addReplica lists replica in uid's record and returns the online change
// to announce when the user was offline. A reconnect within the grace
// period only cancels the pending offline.
func (t *Tracker) addReplica(ctx context.Context, uid, replica string) (*Change, error) {
	var change *Change
	now := t.now()
	err := t.updateUser(ctx, uid, func(rec *userRecord, _ bool) bool {
		change = nil
		if rec.hasReplica(replica) && rec.Status == api.Online {
			return false
		}
		rec.addReplica(replica)
		rec.OfflineAt = nil
		if rec.Status != api.Online {
			rec.Status = api.Online
			change = &Change{UserID: uid, Status: api.Online, LastSeen: now}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return change, nil
}

// removeReplica takes replica out of uid's record. When no replica is
// left the user goes offline: after the grace period when graceful (the
// sweeper announces it), at once otherwise, returning the change to
// announce. at is when the user was last seen on replica.
func (t *Tracker) removeReplica(ctx context.Context, uid, replica string, at time.Time, graceful bool) (*Change, error) {
	deadline := at.Add(t.cfg.Grace)
	graceful = graceful && t.cfg.Grace > 0
	if graceful {
		// The pending entry goes first, so the sweeper finds the user even
		// if this process dies before the record is written; an entry for
		// a user who is not pending is simply dropped by the sweeper.
		rec, found, err := t.readUser(ctx, uid)
		if err != nil {
			return nil, err
		}
		if found && rec.Status == api.Online && len(rec.Replicas) == 1 && rec.hasReplica(replica) {
			if err := t.updatePending(ctx, pendingKey(bucketOf(uid, pendingBuckets)), func(p pendingBucket) {
				p[uid] = deadline
			}); err != nil {
				return nil, err
			}
		}
	}
	var change *Change
	err := t.updateUser(ctx, uid, func(rec *userRecord, found bool) bool {
		change = nil
		if !found || !rec.hasReplica(replica) {
			return false
		}
		rec.removeReplica(replica)
		if len(rec.Replicas) > 0 {
			return true
		}
		seen := at.UTC()
		rec.LastSeen = &seen
		if rec.Status != api.Online {
			return true
		}
		if graceful {
			rec.OfflineAt = &deadline
			return true
		}
		rec.Status, rec.OfflineAt = api.Offline, nil
		change = &Change{UserID: uid, Status: api.Offline, LastSeen: seen}
		return true
	})
	if err != nil {
		return nil, err
	}
	return change, nil
}

// announce hands the non-nil changes to the notifier in one batch.
func (t *Tracker) announce(ctx context.Context, changes ...*Change) {
	var out []Change
	for _, c := range changes {
		if c != nil {
			out = append(out, *c)
		}
	}
	if len(out) > 0 {
		t.notify.Announce(ctx, out)
	}
}
