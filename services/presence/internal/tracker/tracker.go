// Package tracker is presence's state machine: which users are online,
// across every ws replica, kept in a statestore.Store with no Query API.
//
// A user is online while at least one ws replica holds one of their
// connections. ws replicas report connects and disconnects one by one and
// heartbeat their whole live set once per interval; each heartbeat renews
// the replica's lease, a key with a TTL. A replica killed without a word
// stops renewing, its lease expires, and the sweeper takes its users
// offline. A user whose last connection closes stays announced online for
// a grace period, so a quick reconnect emits nothing.
//
// Every change commits with single conditional (ETag) writes, never
// relying on a transaction being rolled back (Redis does not), and in an
// order that leaves any crash in between repairable by the next heartbeat:
// a user's record is written before the replica's member bucket, and a
// pending-offline entry before the user's record.
package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/statestore"
)

// Change is one announced transition of a user's status.
type Change struct {
	UserID   string
	Status   string // api.Online or api.Offline
	LastSeen time.Time
}

// Notifier announces status changes to whoever shares a room with the
// user. Announcing is best effort: signals are ephemeral.
type Notifier interface {
	Announce(ctx context.Context, changes []Change)
}

// Config tunes the tracker.
type Config struct {
	// Grace is how long a user with no connection left stays online, so a
	// reconnect within it announces nothing.
	Grace time.Duration
	// LeaseTTL is how long a replica stays alive after its last heartbeat.
	// It must exceed the ws heartbeat interval (at least twice, to survive
	// one lost heartbeat).
	LeaseTTL time.Duration
}

// Tracker keeps presence.
type Tracker struct {
	store  statestore.Store
	notify Notifier
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
}

// New returns a Tracker over store. now is the clock (time.Now outside
// tests).
func New(store statestore.Store, notify Notifier, cfg Config, now func() time.Time, log *slog.Logger) *Tracker {
	return &Tracker{store: store, notify: notify, cfg: cfg, now: now, log: log}
}

// maxAttempts bounds an optimistic-concurrency retry loop; contention on
// one key is between a handful of writers (replicas and the sweeper).
const maxAttempts = 20

var errGaveUp = errors.New("presence: too much contention, giving up")

// reportTimeout bounds one report carried on after its caller left.
const reportTimeout = 15 * time.Second

// detach lets a report that has begun run to its end even if the caller
// goes away (a ws replica killed mid-call): stopping between its writes
// could list a user on a replica whose member bucket lacks them, a ghost
// nobody clears once that replica is dead.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
}

// Connect records a new connection of uid on replica.
func (t *Tracker) Connect(ctx context.Context, replica, uid string) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	if err := t.ensureReplica(ctx, replica); err != nil {
		return err
	}
	n, err := t.memberCount(ctx, replica, uid)
	if err != nil {
		return err
	}
	if n == 0 {
		// The user's record first: should the bucket write below fail,
		// the next heartbeat still lists the user and repairs the bucket.
		change, err := t.addReplica(ctx, uid, replica)
		if err != nil {
			return err
		}
		t.announce(ctx, change)
	}
	return t.updateMember(ctx, replica, uid, func(n int) int { return n + 1 })
}

// Disconnect records the end of a connection of uid on replica.
func (t *Tracker) Disconnect(ctx context.Context, replica, uid string) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	n, err := t.memberCount(ctx, replica, uid)
	if err != nil {
		return err
	}
	if n <= 1 {
		// The user's record first: a bucket left behind still counting the
		// user is dropped by the next heartbeat, which no longer lists them.
		change, err := t.removeReplica(ctx, uid, replica, t.now(), true)
		if err != nil {
			return err
		}
		t.announce(ctx, change)
	}
	return t.updateMember(ctx, replica, uid, func(n int) int { return n - 1 })
}

// Heartbeat replaces replica's live set with users (user id → connection
// count) and renews its lease. Users the replica no longer holds are
// treated as disconnected (with grace); users it holds but presence missed
// are connected.
func (t *Tracker) Heartbeat(ctx context.Context, replica string, users map[string]int) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	if err := t.ensureReplica(ctx, replica); err != nil {
		return err
	}
	if err := t.writeLease(ctx, replica); err != nil {
		return err
	}
	want := make([]memberBucket, memberBuckets)
	for uid, n := range users {
		if n <= 0 {
			continue
		}
		b := bucketOf(uid, memberBuckets)
		if want[b] == nil {
			want[b] = memberBucket{}
		}
		want[b][uid] = n
	}
	keys := make([]string, memberBuckets)
	for b := range keys {
		keys[b] = memberKey(replica, b)
	}
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			return fmt.Errorf("heartbeat of %s: %w", replica, errGaveUp)
		}
		items, err := t.store.BulkGet(ctx, keys)
		if err != nil {
			return fmt.Errorf("heartbeat of %s: %w", replica, err)
		}
		conflict := false
		for b, it := range items {
			var have memberBucket
			if err := decode(it.Key, it.Value, &have); err != nil {
				return err
			}
			if maps.Equal(have, want[b]) {
				continue
			}
			now := t.now()
			var changes []*Change
			for uid := range have {
				if want[b][uid] == 0 {
					change, err := t.removeReplica(ctx, uid, replica, now, true)
					if err != nil {
						return err
					}
					changes = append(changes, change)
				}
			}
			for uid := range want[b] {
				if have[uid] == 0 {
					change, err := t.addReplica(ctx, uid, replica)
					if err != nil {
						return err
					}
					changes = append(changes, change)
				}
			}
			t.announce(ctx, changes...)
			err := t.writeBucket(ctx, it, want[b])
			if errors.Is(err, statestore.ErrConflict) {
				conflict = true
				continue
			}
			if err != nil {
				return err
			}
		}
		if !conflict {
			return nil
		}
	}
}

// Presence answers the status of each user in uids, in order, with one
// BulkGet. A user never seen is offline with no last_seen.
func (t *Tracker) Presence(ctx context.Context, uids []string) ([]api.Presence, error) {
	keys := make([]string, len(uids))
	for i, uid := range uids {
		keys[i] = userKey(uid)
	}
	items, err := t.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read presence of %d users: %w", len(uids), err)
	}
	now := t.now()
	out := make([]api.Presence, len(uids))
	for i, it := range items {
		out[i] = api.Presence{UserID: uids[i], Status: api.Offline}
		if !it.Found() {
			continue
		}
		var rec userRecord
		if err := decode(it.Key, it.Value, &rec); err != nil {
			return nil, err
		}
		out[i].Status, out[i].LastSeen = rec.effective(now)
	}
	return out, nil
}

// effective is the status a reader sees at now. It does not wait for the
// sweeper: a grace period that has run out reads as offline at once.
func (r *userRecord) effective(now time.Time) (string, *time.Time) {
	if r.Status != api.Online {
		return api.Offline, r.LastSeen
	}
	if len(r.Replicas) == 0 && r.OfflineAt != nil && !now.Before(*r.OfflineAt) {
		return api.Offline, r.LastSeen
	}
	// An online user is being seen right now.
	seen := now.UTC()
	return api.Online, &seen
}

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
	for range maxAttempts {
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
		err = t.store.Write(ctx, op)
		if errors.Is(err, statestore.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write presence of %s: %w", uid, err)
		}
		return nil
	}
	return fmt.Errorf("update presence of %s: %w", uid, errGaveUp)
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
	for range maxAttempts {
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
		err = t.writeBucket(ctx, it, m)
		if errors.Is(err, statestore.ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("update members of %s: %w", replica, errGaveUp)
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
	for range maxAttempts {
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
		err = t.store.Write(ctx, op)
		if errors.Is(err, statestore.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("update %s: %w", key, errGaveUp)
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
	for range maxAttempts {
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
		err = t.store.Write(ctx, statestore.Op{Key: replicaIndex, Value: encode(s), ETag: it.ETag, IfAbsent: !it.Found()})
		if errors.Is(err, statestore.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write replica index: %w", err)
		}
		return nil
	}
	return fmt.Errorf("update replica index: %w", errGaveUp)
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
