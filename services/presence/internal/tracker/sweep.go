package tracker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

// Sweep announces offline for users whose grace ran out and takes the
// users of replicas whose lease expired offline. The service calls it
// every second; its cost does not depend on how many users are connected
// (a few reads), only on how many just left.
func (t *Tracker) Sweep(ctx context.Context) error {
	return errors.Join(t.sweepReplicas(ctx), t.sweepPending(ctx))
}

// sweepReplicas finds replicas whose lease expired and removes them from
// every user they held.
func (t *Tracker) sweepReplicas(ctx context.Context) error {
	idx, err := t.store.Get(ctx, replicaIndex)
	if errors.Is(err, statestore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read replica index: %w", err)
	}
	var set replicaSet
	if err := decode(idx.Key, idx.Value, &set); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(set))
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = leaseKey(n)
	}
	leases, err := t.store.BulkGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("read replica leases: %w", err)
	}
	var errs []error
	for i, l := range leases {
		if l.Found() {
			continue
		}
		if err := t.expireReplica(ctx, names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// expireReplica takes a replica that stopped heartbeating out of every
// user record that lists it, then forgets it. Its users go offline at
// once, without grace: they have not been heard from for a whole lease
// TTL, longer than any grace period.
func (t *Tracker) expireReplica(ctx context.Context, replica string) error {
	keys := make([]string, memberBuckets)
	for b := range keys {
		keys[b] = memberKey(replica, b)
	}
	items, err := t.store.BulkGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("read members of expired replica %s: %w", replica, err)
	}
	lastHeard := t.now().Add(-t.cfg.LeaseTTL)
	var changes []*Change
	defer func() { t.announce(ctx, changes...) }()
	for _, it := range items {
		if !it.Found() {
			continue
		}
		var members memberBucket
		if err := decode(it.Key, it.Value, &members); err != nil {
			return err
		}
		for _, uid := range slices.Sorted(maps.Keys(members)) {
			change, err := t.removeReplica(ctx, uid, replica, lastHeard, false)
			if err != nil {
				return err
			}
			changes = append(changes, change)
		}
		err := t.store.Write(ctx, statestore.Op{Key: it.Key, Delete: true, ETag: it.ETag})
		if errors.Is(err, statestore.ErrConflict) {
			// The replica came back and heartbeat meanwhile: its users
			// are connected again, so give them the replica back.
			return t.restoreReplica(ctx, replica, it.Key)
		}
		if err != nil {
			return fmt.Errorf("drop members of expired replica %s: %w", replica, err)
		}
	}
	t.log.InfoContext(ctx, "ws replica lease expired; its users are offline", "replica", replica)
	return t.updateIndex(ctx, func(s replicaSet) bool {
		if _, ok := s[replica]; !ok {
			return false
		}
		delete(s, replica)
		return true
	}, func() error {
		// A replica that heartbeat again since is not forgotten.
		if _, err := t.store.Get(ctx, leaseKey(replica)); err == nil {
			return errReplicaAlive
		} else if !errors.Is(err, statestore.ErrNotFound) {
			return err
		}
		return nil
	})
}

var errReplicaAlive = errors.New("replica alive again")

// restoreReplica lists replica again for every user in the member bucket
// at key, after an expiry raced with the replica's return.
func (t *Tracker) restoreReplica(ctx context.Context, replica, key string) error {
	it, err := t.store.Get(ctx, key)
	if errors.Is(err, statestore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read members of %s: %w", replica, err)
	}
	var members memberBucket
	if err := decode(key, it.Value, &members); err != nil {
		return err
	}
	var changes []*Change
	defer func() { t.announce(ctx, changes...) }()
	for uid := range members {
		change, err := t.addReplica(ctx, uid, replica)
		if err != nil {
			return err
		}
		changes = append(changes, change)
	}
	return nil
}

// sweepPending announces offline for every user whose grace ran out.
func (t *Tracker) sweepPending(ctx context.Context) error {
	keys := make([]string, pendingBuckets)
	for b := range keys {
		keys[b] = pendingKey(b)
	}
	items, err := t.store.BulkGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("read pending offlines: %w", err)
	}
	now := t.now()
	var errs []error
	for _, it := range items {
		var pending pendingBucket
		if err := decode(it.Key, it.Value, &pending); err != nil {
			errs = append(errs, err)
			continue
		}
		var due []string
		for uid, at := range pending {
			if !now.Before(at) {
				due = append(due, uid)
			}
		}
		if len(due) == 0 {
			continue
		}
		slices.Sort(due)
		var changes []*Change
		next := map[string]*time.Time{}
		for _, uid := range due {
			change, later, err := t.settle(ctx, uid, now)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			changes = append(changes, change)
			next[uid] = later
		}
		t.announce(ctx, changes...)
		if err := t.updatePending(ctx, it.Key, func(p pendingBucket) {
			for uid, later := range next {
				// An entry a newer disconnect rewrote meanwhile is kept.
				if !p[uid].Equal(pending[uid]) {
					continue
				}
				if later != nil {
					p[uid] = *later
				} else {
					delete(p, uid)
				}
			}
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
