package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/wait"
)

// The index is the set of users who have at least one device, so that a
// push decision knows without a read that a member has none (most
// members, most of the time). The state store has no Query API, so the
// set lives in IndexShards keys, "devidx|<shard>", each holding the ids
// of its users and a version that every write increments; a user's shard
// is a hash of the id. Every replica keeps the whole set in memory:
// loaded at start, re-read every refresh interval, and changed at once by
// the replica that writes a shard, which then announces the shard's new
// version on events.TopicDevicesChanged. Every other replica re-reads
// that shard when the notice arrives, so a new device is known everywhere
// within the notice's trip; a lost notice is made up for by the next
// refresh. Versions order what a replica applies: an older read never
// overwrites a newer one.

// IndexShards is how many keys the index is spread over, so that
// registrations do not all contend on one key. It is fixed: changing it
// would strand users in the shards of the old count.
const IndexShards = 64

// maxChecked bounds the users without devices the fallback remembers
// having checked; past it the set starts again (a user costs one more
// read).
const maxChecked = 100_000

func indexKey(shard int) string { return "devidx|" + strconv.Itoa(shard) }

// IndexShard returns the shard that holds userID.
func IndexShard(userID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(userID))
	return int(h.Sum32() % IndexShards)
}

// shardRecord is the value of one index key.
type shardRecord struct {
	Version int64    `json:"version"`
	Users   []string `json:"users"`
}

type shardState struct {
	version int64
	users   map[string]struct{}
}

// Announcer tells every replica that an index shard changed;
// events.TopicDevicesChanged on the fan-out component carries it.
type Announcer interface {
	Publish(ctx context.Context, n events.DevicesChanged) error
}

// IndexOptions configure an Index.
type IndexOptions struct {
	// Announcer tells the other replicas of a change; nil announces nothing
	// (one replica, or tests).
	Announcer Announcer
	// Fallback makes a user absent from the index cost one read of their
	// device record, once per replica, in case they registered before the
	// index existed; a device found so is added to the index. Turn it off
	// once every such device is indexed (docs/notifications.md).
	Fallback bool
	Log      *slog.Logger
}

// Index is the in-memory set of users with devices, kept in step with
// its shards in the store.
type Index struct {
	store statestore.Store
	opts  IndexOptions

	mu      sync.RWMutex
	loaded  bool
	shards  [IndexShards]shardState
	checked map[string]struct{}
}

// NewIndex returns an Index over store; it is empty until Load.
func NewIndex(store statestore.Store, opts IndexOptions) *Index {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Index{store: store, opts: opts, checked: map[string]struct{}{}}
}

// apply installs rec as shard i unless memory holds a newer version.
func (x *Index) apply(i int, rec shardRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if s := &x.shards[i]; s.users == nil || rec.Version > s.version {
		users := make(map[string]struct{}, len(rec.Users))
		for _, u := range rec.Users {
			users[u] = struct{}{}
		}
		*s = shardState{version: rec.Version, users: users}
	}
}

func decodeShard(it statestore.Item) (shardRecord, error) {
	var rec shardRecord
	if !it.Found() {
		return rec, nil
	}
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return rec, fmt.Errorf("decode %s: %w", it.Key, err)
	}
	return rec, nil
}

// Load reads every shard (one BulkGet) into memory.
func (x *Index) Load(ctx context.Context) error {
	keys := make([]string, IndexShards)
	for i := range keys {
		keys[i] = indexKey(i)
	}
	items, err := x.store.BulkGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("read device index: %w", err)
	}
	for i, it := range items {
		rec, err := decodeShard(it)
		if err != nil {
			return err
		}
		x.apply(i, rec)
	}
	x.mu.Lock()
	x.loaded = true
	x.mu.Unlock()
	return nil
}

// Run loads the index, retrying until it succeeds, then reloads it every
// refresh until ctx is done.
func (x *Index) Run(ctx context.Context, refresh time.Duration) {
	backoff := 100 * time.Millisecond
	for x.Load(ctx) != nil {
		if !wait.For(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	wait.Every(ctx, refresh, func() {
		if err := x.Load(ctx); err != nil && ctx.Err() == nil {
			x.opts.Log.WarnContext(ctx, "refresh device index", "err", err)
		}
	})
}

// Changed applies another replica's notice: the shard is re-read unless
// memory already holds its version.
func (x *Index) Changed(ctx context.Context, n events.DevicesChanged) error {
	if n.Shard < 0 || n.Shard >= IndexShards {
		return fmt.Errorf("device index shard %d out of range", n.Shard)
	}
	x.mu.RLock()
	loaded, have := x.loaded, x.shards[n.Shard].version
	x.mu.RUnlock()
	if !loaded {
		return x.Load(ctx)
	}
	if have >= n.Version {
		return nil // this replica's own notice, or one a refresh overtook
	}
	it, err := x.store.Get(ctx, indexKey(n.Shard))
	if err != nil && !errors.Is(err, statestore.ErrNotFound) {
		return fmt.Errorf("read device index shard %d: %w", n.Shard, err)
	}
	rec, err := decodeShard(it)
	if err != nil {
		return err
	}
	x.apply(n.Shard, rec)
	return nil
}

// Has reports whether memory lists userID as having a device.
func (x *Index) Has(userID string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.shards[IndexShard(userID)].users[userID]
	return ok
}

// WithDevices returns which of userIDs have a device. It reads nothing
// once the index is loaded, except, with the fallback on, the device
// records of users this replica has not checked yet (one BulkGet).
func (x *Index) WithDevices(ctx context.Context, userIDs []string) (map[string]bool, error) {
	x.mu.RLock()
	loaded := x.loaded
	x.mu.RUnlock()
	if !loaded {
		if err := x.Load(ctx); err != nil {
			return nil, err
		}
	}
	out := map[string]bool{}
	var unknown []string
	seen := map[string]bool{}
	x.mu.RLock()
	for _, u := range userIDs {
		if _, ok := x.shards[IndexShard(u)].users[u]; ok {
			out[u] = true
		} else if _, ok := x.checked[u]; x.opts.Fallback && !ok && !seen[u] {
			seen[u] = true
			unknown = append(unknown, u)
		}
	}
	x.mu.RUnlock()
	if len(unknown) == 0 {
		return out, nil
	}
	keys := make([]string, len(unknown))
	for i, u := range unknown {
		keys[i] = key(u)
	}
	items, err := x.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read devices of %d users not in the index: %w", len(unknown), err)
	}
	for i, it := range items {
		u := unknown[i]
		var rec record
		if it.Found() {
			if err := json.Unmarshal(it.Value, &rec); err != nil {
				return nil, fmt.Errorf("decode devices of %s: %w", u, err)
			}
		}
		if len(rec.Devices) == 0 {
			x.mu.Lock()
			if len(x.checked) >= maxChecked {
				clear(x.checked)
			}
			x.checked[u] = struct{}{}
			x.mu.Unlock()
			continue
		}
		// Registered before the index existed: index it, so no replica
		// needs the fallback for this user again.
		if err := x.add(ctx, u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, nil
}

// add lists userID in its shard (a write only if missing).
func (x *Index) add(ctx context.Context, userID string) error {
	return x.change(ctx, userID, true)
}

// remove takes userID out of its shard (a write only if listed).
func (x *Index) remove(ctx context.Context, userID string) error {
	return x.change(ctx, userID, false)
}

func (x *Index) change(ctx context.Context, userID string, in bool) error {
	i := IndexShard(userID)
	var now shardRecord
	wrote := false
	err := statestore.Update(ctx, x.store, indexKey(i), 0, func(rec *shardRecord, _ bool) bool {
		has := slices.Contains(rec.Users, userID)
		wrote = has != in
		if wrote {
			if in {
				rec.Users = append(rec.Users, userID)
			} else {
				rec.Users = slices.DeleteFunc(rec.Users, func(u string) bool { return u == userID })
			}
			rec.Version++
		}
		now = *rec
		return wrote
	})
	if err != nil {
		return fmt.Errorf("update device index for %s: %w", userID, err)
	}
	x.apply(i, now)
	if wrote && x.opts.Announcer != nil {
		// A notice that does not go out delays the other replicas until
		// their next refresh; the index itself is right.
		if err := x.opts.Announcer.Publish(ctx, events.DevicesChanged{UserID: userID, Shard: i, Version: now.Version}); err != nil {
			x.opts.Log.WarnContext(ctx, "announce a device index change", "user_id", userID, "err", err)
		}
	}
	return nil
}
