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

// maxAttempts bounds an optimistic-concurrency retry loop
// (statestore.Retry); contention on one key is between a handful of
// writers (replicas and the sweeper).
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
	err := statestore.Retry(ctx, maxAttempts, func() error {
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
		if conflict {
			return statestore.ErrConflict
		}
		return nil
	})
	return gaveUp(err, "heartbeat of "+replica)
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
