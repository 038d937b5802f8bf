// Package notify decides who gets a push for a room's new messages and
// sends it: recipients are the room's members but the sender, minus those
// online (unless mentioned), minus muted ones; each user's messages in one
// room are coalesced into at most one push per window; every write that
// could repeat a push is guarded, so a redelivered event or a second
// replica never pushes twice. A batch may hold several rooms; the rooms
// (members, name, kind) are cached and follow the membership events that
// pass through, and which members have a device is known in memory, so a
// message for members who are online or have no device costs next to
// nothing.
package notify

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
	"github.com/papochat/papo/services/notification/internal/push"
)

// Room is what a decision needs to know of a room.
type Room struct {
	ID      string
	Name    string
	Kind    string
	Members []string
	// LastSeq is the room's last seq when it was looked up: membership
	// events up to it are in Members.
	LastSeq int64
}

// Rooms looks rooms up (the message service). An Engine caches what it
// returns (rooms.go).
type Rooms interface {
	Room(ctx context.Context, roomID string) (Room, error)
}

// Presence tells which users are online (the presence service).
type Presence interface {
	Online(ctx context.Context, userIDs []string) (map[string]bool, error)
}

// Users resolves user ids to usernames (the auth service).
type Users interface {
	Usernames(ctx context.Context, userIDs []string) (map[string]string, error)
}

// Devices are the users' registered devices.
type Devices interface {
	// WithDevices returns which of userIDs have a device; it is asked for
	// every member of every room with a message, so it must answer from
	// memory (device.Index).
	WithDevices(ctx context.Context, userIDs []string) (map[string]bool, error)
	ForUsers(ctx context.Context, userIDs []string) (map[string][]device.Device, error)
	Remove(ctx context.Context, userID, deviceID string) error
	// Sync mends the user's entry in WithDevices' index after a flush
	// found the user listed there without a device.
	Sync(ctx context.Context, userID string) error
}

// Modes are the users' per-room notification modes.
type Modes interface {
	ForUsers(ctx context.Context, roomID string, userIDs []string) (map[string]string, error)
	ForPairs(ctx context.Context, pairs []mode.Pair) (map[mode.Pair]string, error)
}

// Pusher delivers one notification to one device.
type Pusher interface {
	Send(ctx context.Context, d device.Device, n push.Notification) error
}

// DeadLetters keeps pushes that could not be delivered after every retry.
type DeadLetters interface {
	DeadLetter(ctx context.Context, d device.Device, n push.Notification, reason error) error
}

// Options tune an Engine; zero values take the defaults.
type Options struct {
	// Window is the coalescing window: at most one push per user and room
	// in it. Default 60 s.
	Window time.Duration
	// DedupeTTL is how long seen events and sent pushes are remembered
	// against redelivery. Default 24 h.
	DedupeTTL time.Duration
	// Attempts bounds the tries of one push; Backoff is the first pause
	// between them, doubling up to MaxBackoff. Defaults 5, 1 s, 30 s.
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Workers bounds concurrent flushes. Default 4.
	Workers int
	// RoomTTL bounds how long a looked-up room (members, name, kind) is
	// used before it is looked up again; RoomCacheSize bounds how many
	// rooms are kept. Defaults 30 s and 10,000.
	RoomTTL       time.Duration
	RoomCacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Window <= 0 {
		o.Window = 60 * time.Second
	}
	if o.DedupeTTL <= 0 {
		o.DedupeTTL = 24 * time.Hour
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.RoomTTL <= 0 {
		o.RoomTTL = 30 * time.Second
	}
	if o.RoomCacheSize <= 0 {
		o.RoomCacheSize = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Deps are an Engine's collaborators.
type Deps struct {
	Store       statestore.Store
	Rooms       Rooms
	Presence    Presence
	Users       Users
	Devices     Devices
	Modes       Modes
	Pusher      Pusher
	DeadLetters DeadLetters
	Log         *slog.Logger
	// Metrics, when set, count batches, counted messages and pushes.
	Metrics *Metrics
}

// Engine makes push decisions from room events and flushes coalesced
// windows when they close.
type Engine struct {
	Deps
	opts  Options
	rooms *roomCache
	sched *scheduler
	// inflight tracks running flushes, so Run returns after them.
	inflight sync.WaitGroup
}

// New returns an Engine.
func New(deps Deps, opts Options) *Engine {
	opts.defaults()
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Engine{Deps: deps, opts: opts, rooms: newRoomCache(deps.Rooms, opts.RoomCacheSize, opts.RoomTTL, opts.Now), sched: newScheduler()}
}

// window is the state of one user's open coalescing window in one room.
type window struct {
	Due        time.Time `json:"due"`
	FirstSeq   int64     `json:"first_seq"`
	LastSeq    int64     `json:"last_seq"`
	Count      int       `json:"count"`
	Mentions   int       `json:"mentions"`
	LastSender string    `json:"last_sender"`
	RoomName   string    `json:"room_name,omitempty"`
	RoomKind   string    `json:"room_kind,omitempty"`
}

func windowKey(roomID, userID string) string { return "window|" + roomID + "|" + userID }

func seenKey(roomID string, seq int64, userID string) string {
	return "seen|" + roomID + "|" + strconv.FormatInt(seq, 10) + "|" + userID
}

func pushedKey(roomID string, firstSeq int64, deviceID string) string {
	return "pushed|" + roomID + "|" + strconv.FormatInt(firstSeq, 10) + "|" + deviceID
}
