// Package room is the message service's core: rooms, membership, DMs, the
// gap-free per-room event log, history and read markers, kept in a
// statestore.Store and announced through a Publisher. It knows nothing of
// HTTP or Dapr; docs/message.md describes its keys and algorithms.
package room

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/e2ee"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// Publisher publishes one payload, encoded as JSON, to a topic of the
// competing-consumer pub/sub component.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload any) error
}

// Service is the message service's domain logic. Several Services (one per
// replica) may share one store: every change is an ETag-guarded
// transaction, re-read and retried on conflict.
type Service struct {
	store  statestore.Store
	pub    Publisher
	log    *slog.Logger
	now    func() time.Time
	writer *writer
	// events caches materialized event records by key. An event key is
	// written once with the only value it can have (a delete erases the
	// text, but pages hide it at read time from the head), so a cached
	// record needs no invalidation, whichever replica appends; it is only
	// served for eventCacheTTL, so no record read before a delete outlives
	// the delete's stay in the head (keepDeletes).
	events *lru.Cache[string, cachedEvent]
	// dms coalesces concurrent opens of one DM (see OpenDM).
	dms singleflight.Group
	// scrollback holds recently read heads for scrollback pages (see
	// scrollbackHead).
	scrollback *expirable.LRU[string, *scrollEntry]
	// compactions are the planned compactions of room heads, by room.
	compactMu   sync.Mutex
	compactions map[string]*time.Timer
	// erasures are the planned erasures of deleted messages' text, by
	// event key (see erase.go); eraseAgain is how long after an erase the
	// replica erases again.
	eraseMu    sync.Mutex
	erasures   map[string]bool
	eraseAgain time.Duration
	// maxRooms caps the rooms (DMs apart) one user may be in.
	maxRooms int
	// metrics and tracer observe the writer's rounds (SetTelemetry).
	metrics *Metrics
	tracer  trace.Tracer
}

// EventCacheSize is how many event records a Service keeps in memory for
// history reads (a page of recent history is read by every client that
// opens a room or resumes).
const EventCacheSize = 20000

// New returns a Service over store, announcing through pub.
func New(store statestore.Store, pub Publisher, log *slog.Logger) *Service {
	events, err := lru.New[string, cachedEvent](EventCacheSize)
	if err != nil {
		panic(err) // only for a non-positive size, which EventCacheSize is not
	}
	s := &Service{store: store, pub: pub, log: log, now: time.Now, events: events,
		scrollback:  expirable.NewLRU[string, *scrollEntry](ScrollbackRooms, nil, ScrollbackTTL),
		compactions: map[string]*time.Timer{},
		erasures:    map[string]bool{}, eraseAgain: eraseAgainAfter, maxRooms: DefaultMaxRoomsPerUser,
		metrics: discardMetrics(), tracer: noTracer()}
	s.writer = newWriter(s)
	return s
}

// SetRoundInterval makes the writer start a commit round at most every d:
// submissions that arrive meanwhile wait and go together, so each
// message costs fewer sidecar calls for up to d more latency. Zero (the
// default) starts each round as soon as the last one has committed. Set it
// before the Service takes submissions.
func (s *Service) SetRoundInterval(d time.Duration) { s.writer.roundEvery = max(d, 0) }

// maxAttempts bounds the re-read-and-retry loop of one change under
// contention; past it the change fails as Unavailable (and a submission is
// redelivered by the broker).
const maxAttempts = 64

// errBusy is what a change returns when it lost the ETag race maxAttempts times.
var errBusy = apierror.New(apierror.Unavailable, "busy", "the room is busy, retry")

// retry runs attempt until it does not fail with statestore.ErrConflict
// (statestore.Retry); a change that lost the race maxAttempts times is
// errBusy.
func (s *Service) retry(ctx context.Context, attempt func() error) error {
	err := statestore.Retry(ctx, maxAttempts, attempt)
	if errors.Is(err, statestore.ErrConflict) {
		s.log.WarnContext(ctx, "gave up after etag conflicts", "attempts", maxAttempts, "err", err)
		return errBusy
	}
	return err
}

// Errors a client may see.
var (
	errRoomNotFound = apierror.New(apierror.NotFound, "room_not_found", "no such room")
	errNotMember    = apierror.New(apierror.Forbidden, "not_a_member", "you are not a member of this room")
)

// checkSubmission applies the rules that need no stored state; the rules
// for text and ids are the contract's (api/validate), the same the ws
// service applies to frames and REST bodies get.
func checkSubmission(sub events.Submission) error {
	if validate.RoomID(sub.RoomID) != nil {
		return errRoomNotFound
	}
	if err := validate.UserID(sub.SenderID); err != nil {
		return apierror.Invalidf("invalid_sender", "submission has no valid sender")
	}
	if err := validate.ClientID(sub.ClientID, false); err != nil {
		return err
	}
	switch sub.Type {
	case api.EventMessage:
		return e2ee.CheckContent(sub.Text, sub.E2EE)
	case api.EventEdit:
		if sub.TargetSeq < 1 {
			return apierror.Invalidf("invalid_target", "an edit needs target_seq")
		}
		return e2ee.CheckContent(sub.Text, sub.E2EE)
	case api.EventDelete:
		if sub.TargetSeq < 1 {
			return apierror.Invalidf("invalid_target", "a delete needs target_seq")
		}
		return nil
	default:
		return apierror.Invalidf("invalid_type", "submission type %q is not message, edit or delete", sub.Type)
	}
}

// newRoomID returns a random room id.
func newRoomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "r_" + hex.EncodeToString(b[:])
}

// clientRoomID derives the id of the room userID creates with clientID, so
// a retried creation names the same room.
func clientRoomID(userID, clientID string) string {
	sum := sha256.Sum256([]byte("room\x00" + userID + "\x00" + clientID))
	return "r_" + hex.EncodeToString(sum[:12])
}

// dmID derives a DM's room id from the sorted pair, so both users name the
// same room whoever opens it first.
func dmID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	sum := sha256.Sum256([]byte(a + "\x00" + b))
	return "dm_" + hex.EncodeToString(sum[:20])
}

// edmID derives the id of a pair's end-to-end encrypted DM: another room
// than their plaintext DM, so neither ever turns into the other.
func edmID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	sum := sha256.Sum256([]byte("e2ee\x00" + a + "\x00" + b))
	return "edm_" + hex.EncodeToString(sum[:20])
}

// announce publishes a batch of room events, acks and rejections, retrying
// briefly: the events are already durable, and a missed announcement only
// costs live delivery (clients recover it from history).
func (s *Service) announce(ctx context.Context, b events.RoomEventBatch) error {
	if len(b.Events) == 0 && len(b.Acks) == 0 && len(b.Rejections) == 0 {
		return nil
	}
	var err error
	for i := range 3 {
		if err = s.pub.Publish(ctx, events.TopicRoomEvents, b); err == nil {
			return nil
		}
		t := time.NewTimer(time.Duration(i+1) * 50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("publish events of room %s: %w", b.RoomID, err)
		case <-t.C:
		}
	}
	return fmt.Errorf("publish events of room %s: %w", b.RoomID, err)
}

// announceLogged announces after a change a client already saw succeed; a
// failure is logged, not returned, because the change is durable.
func (s *Service) announceLogged(ctx context.Context, b events.RoomEventBatch) {
	if err := s.announce(ctx, b); err != nil {
		s.log.ErrorContext(ctx, "announce room events", "room_id", b.RoomID, "err", err)
	}
}
