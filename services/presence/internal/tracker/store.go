package tracker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

func (t *Tracker) readUser(ctx context.Context, uid string) (userRecord, bool, error) {
	var rec userRecord
	it, err := t.store.Get(ctx, userKey(uid))
	if errors.Is(err, statestore.ErrNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("read presence of %s: %w", uid, err)
	}
	return rec, true, decode(it.Key, it.Value, &rec)
}

// updateUser applies change to uid's record under optimistic concurrency,
// retrying on conflict. change reports whether it modified the record; it
// may run several times.
func (t *Tracker) updateUser(ctx context.Context, uid string, change func(rec *userRecord, found bool) bool) error {
	key := userKey(uid)
	err := statestore.Retry(ctx, maxAttempts, func() error {
		var rec userRecord
		it, err := t.store.Get(ctx, key)
		found := err == nil
		if err != nil && !errors.Is(err, statestore.ErrNotFound) {
			return fmt.Errorf("read presence of %s: %w", uid, err)
		}
		if found {
			if err := decode(key, it.Value, &rec); err != nil {
				return err
			}
		}
		if !change(&rec, found) {
			return nil
		}
		op := statestore.Op{Key: key, Value: encode(rec), ETag: it.ETag, IfAbsent: !found}
		if err := t.store.Write(ctx, op); err != nil {
			return fmt.Errorf("write presence of %s: %w", uid, err)
		}
		return nil
	})
	return gaveUp(err, "update presence of "+uid)
}

func (t *Tracker) memberCount(ctx context.Context, replica, uid string) (int, error) {
	it, err := t.store.Get(ctx, memberKey(replica, bucketOf(uid, memberBuckets)))
	if errors.Is(err, statestore.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read members of %s: %w", replica, err)
	}
	var m memberBucket
	if err := decode(it.Key, it.Value, &m); err != nil {
		return 0, err
	}
	return m[uid], nil
}

// updateMember changes uid's connection count on replica; a count that
// drops to zero removes the user from the bucket.
func (t *Tracker) updateMember(ctx context.Context, replica, uid string, f func(int) int) error {
	key := memberKey(replica, bucketOf(uid, memberBuckets))
	err := statestore.Retry(ctx, maxAttempts, func() error {
		it, err := t.store.Get(ctx, key)
		if err != nil && !errors.Is(err, statestore.ErrNotFound) {
			return fmt.Errorf("read members of %s: %w", replica, err)
		}
		it.Key = key // a missing key reads as an empty Item
		m := memberBucket{}
		if err := decode(key, it.Value, &m); err != nil {
			return err
		}
		if n := f(m[uid]); n > 0 {
			m[uid] = n
		} else {
			delete(m, uid)
		}
		return t.writeBucket(ctx, it, m)
	})
	return gaveUp(err, "update members of "+replica)
}

// writeBucket replaces the member bucket read as it with m, conditionally.
func (t *Tracker) writeBucket(ctx context.Context, it statestore.Item, m memberBucket) error {
	op := statestore.Op{Key: it.Key, ETag: it.ETag, IfAbsent: !it.Found()}
	if len(m) == 0 {
		if !it.Found() {
			return nil
		}
		op.Delete = true
	} else {
		op.Value = encode(m)
	}
	if err := t.store.Write(ctx, op); err != nil {
		return fmt.Errorf("write %s: %w", it.Key, err)
	}
	return nil
}

func (t *Tracker) updatePending(ctx context.Context, key string, f func(pendingBucket)) error {
	err := statestore.Retry(ctx, maxAttempts, func() error {
		it, err := t.store.Get(ctx, key)
		if err != nil && !errors.Is(err, statestore.ErrNotFound) {
			return fmt.Errorf("read %s: %w", key, err)
		}
		p := pendingBucket{}
		if err := decode(key, it.Value, &p); err != nil {
			return err
		}
		before := len(p)
		f(p)
		if len(p) == 0 && before == 0 {
			return nil
		}
		op := statestore.Op{Key: key, ETag: it.ETag, IfAbsent: !it.Found(), Value: encode(p)}
		if len(p) == 0 {
			op = statestore.Op{Key: key, ETag: it.ETag, Delete: true}
		}
		if err := t.store.Write(ctx, op); err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
		return nil
	})
	return gaveUp(err, "update "+key)
}

// ensureReplica makes sure the sweeper watches replica. A replica new to
// the index gets a lease at once, so it is not taken for dead before its
// first heartbeat.
func (t *Tracker) ensureReplica(ctx context.Context, replica string) error {
	added := false
	err := t.updateIndex(ctx, func(s replicaSet) bool {
		if _, ok := s[replica]; ok {
			return false
		}
		s[replica] = struct{}{}
		added = true
		return true
	}, func() error {
		if added {
			return t.writeLease(ctx, replica)
		}
		return nil
	})
	return err
}

// updateIndex changes the replica index under optimistic concurrency.
// before runs before each write and may veto it.
func (t *Tracker) updateIndex(ctx context.Context, f func(replicaSet) bool, before func() error) error {
	err := statestore.Retry(ctx, maxAttempts, func() error {
		it, err := t.store.Get(ctx, replicaIndex)
		if err != nil && !errors.Is(err, statestore.ErrNotFound) {
			return fmt.Errorf("read replica index: %w", err)
		}
		s := replicaSet{}
		if err := decode(replicaIndex, it.Value, &s); err != nil {
			return err
		}
		if !f(s) {
			return nil
		}
		if err := before(); errors.Is(err, errReplicaAlive) {
			return nil
		} else if err != nil {
			return err
		}
		if err := t.store.Write(ctx, statestore.Op{Key: replicaIndex, Value: encode(s), ETag: it.ETag, IfAbsent: !it.Found()}); err != nil {
			return fmt.Errorf("write replica index: %w", err)
		}
		return nil
	})
	return gaveUp(err, "update replica index")
}

func (t *Tracker) writeLease(ctx context.Context, replica string) error {
	op := statestore.Op{Key: leaseKey(replica), Value: encode(lease{At: t.now().UTC()}), TTL: t.cfg.LeaseTTL}
	if err := t.store.Write(ctx, op); err != nil {
		return fmt.Errorf("renew lease of %s: %w", replica, err)
	}
	return nil
}

func derefOr(t *time.Time, def time.Time) time.Time {
	if t != nil {
		return *t
	}
	return def
}

// gaveUp turns a change that lost the ETag race maxAttempts times into
// errGaveUp, so a caller's own retry loop does not take it for a conflict
// of its own.
func gaveUp(err error, what string) error {
	if errors.Is(err, statestore.ErrConflict) {
		return fmt.Errorf("%s: %w", what, errGaveUp)
	}
	return err
}
