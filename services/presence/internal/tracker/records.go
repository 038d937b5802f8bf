package tracker

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"
)

// The state store holds four kinds of keys. Every read the service makes
// is a Get or a BulkGet of keys it can name, because the contract has no
// Query API (see docs/presence.md).
//
//	u|<user_id>                 userRecord, no TTL: the replicas holding the
//	                            user's connections, the announced status,
//	                            last_seen, and the grace deadline.
//	m|<replica>|<bucket>        memberBucket, no TTL: user_id → connection
//	                            count on that replica, hashed over
//	                            memberBuckets keys so no key grows with the
//	                            replica's whole population.
//	lease|<replica>             lease, TTL: the replica is alive. Refreshed
//	                            by every heartbeat; when a replica is killed
//	                            it expires and the sweeper takes its users
//	                            offline.
//	replicas                    replicaIndex, no TTL: the replicas to watch.
//	pending|<bucket>            pendingBucket, no TTL: users whose last
//	                            connection closed and whose grace deadline
//	                            the sweeper must check.
const (
	memberBuckets  = 32
	pendingBuckets = 16
	replicaIndex   = "replicas"
)

func userKey(uid string) string { return "u|" + uid }

func memberKey(replica string, bucket int) string {
	return "m|" + replica + "|" + strconv.Itoa(bucket)
}

func leaseKey(replica string) string { return "lease|" + replica }

func pendingKey(bucket int) string { return "pending|" + strconv.Itoa(bucket) }

func bucketOf(uid string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(uid))
	return int(h.Sum32() % uint32(n))
}

// userRecord is one user's presence.
type userRecord struct {
	// Replicas are the ws replicas holding at least one of the user's
	// connections, sorted.
	Replicas []string `json:"replicas,omitempty"`
	// Status is the status last announced: online or offline.
	Status string `json:"status"`
	// LastSeen is when the user was last known connected: set when the
	// last connection closed (or when the replica holding it was last
	// heard from).
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// OfflineAt is set while the user has no connection but is still
	// announced online: the end of the grace period, after which the
	// sweeper announces offline.
	OfflineAt *time.Time `json:"offline_at,omitempty"`
}

func (r *userRecord) hasReplica(name string) bool {
	_, found := slices.BinarySearch(r.Replicas, name)
	return found
}

func (r *userRecord) addReplica(name string) {
	if i, found := slices.BinarySearch(r.Replicas, name); !found {
		r.Replicas = slices.Insert(r.Replicas, i, name)
	}
}

func (r *userRecord) removeReplica(name string) {
	if i, found := slices.BinarySearch(r.Replicas, name); found {
		r.Replicas = slices.Delete(r.Replicas, i, i+1)
	}
}

// memberBucket maps user ids to their connection count on one replica.
type memberBucket map[string]int

// pendingBucket maps user ids to their grace deadline.
type pendingBucket map[string]time.Time

// replicaSet is the set of replicas the sweeper watches.
type replicaSet map[string]struct{}

// lease is the value of a replica's TTL key.
type lease struct {
	At time.Time `json:"at"`
}

func decode[T any](key string, b []byte, v *T) error {
	if b == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the plain types above are encoded; they always marshal.
		panic(fmt.Sprintf("encode presence record: %v", err))
	}
	return b
}
