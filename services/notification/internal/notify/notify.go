// Package notify decides who gets a push for a room's new messages and
// sends it: recipients are the room's members but the sender, minus those
// online (unless mentioned), minus muted ones; each user's messages in one
// room are coalesced into at most one push per window; every write that
// could repeat a push is guarded, so a redelivered event or a second
// replica never pushes twice.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
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
}

// Rooms looks rooms up (the message service).
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
	ForUsers(ctx context.Context, userIDs []string) (map[string][]device.Device, error)
	Remove(ctx context.Context, userID, deviceID string) error
}

// Modes are the users' per-room notification modes.
type Modes interface {
	ForUsers(ctx context.Context, roomID string, userIDs []string) (map[string]string, error)
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
}

// Engine makes push decisions from room events and flushes coalesced
// windows when they close.
type Engine struct {
	Deps
	opts  Options
	sched *scheduler
	// inflight tracks running flushes, so Run returns after them.
	inflight sync.WaitGroup
}

// New returns an Engine.
func New(deps Deps, opts Options) *Engine {
	opts.defaults()
	return &Engine{Deps: deps, opts: opts, sched: newScheduler()}
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

// Handle makes the decisions for one batch of room events. An error means
// nothing is lost by trying the whole batch again: every recipient's
// count is guarded by a per-event key, so a retry counts nobody twice.
func (e *Engine) Handle(ctx context.Context, batch events.RoomEventBatch) error {
	var msgs []api.Event
	for _, ev := range batch.Events {
		if ev.Type == api.EventMessage && ev.SenderID != "" {
			msgs = append(msgs, ev)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	room, err := e.Rooms.Room(ctx, batch.RoomID)
	if err != nil {
		return fmt.Errorf("room %s: %w", batch.RoomID, err)
	}
	// Only users with a device can be pushed; everything else is read
	// for them alone.
	devs, err := e.Devices.ForUsers(ctx, room.Members)
	if err != nil {
		return err
	}
	users := make([]string, 0, len(devs))
	for _, u := range room.Members {
		if len(devs[u]) > 0 {
			users = append(users, u)
		}
	}
	if len(users) == 0 {
		return nil
	}
	modes, err := e.Modes.ForUsers(ctx, room.ID, users)
	if err != nil {
		return err
	}
	online, err := e.Presence.Online(ctx, users)
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	var names map[string]string
	if room.Kind != api.RoomDM && anyMention(msgs) {
		if names, err = e.Users.Usernames(ctx, users); err != nil {
			return fmt.Errorf("usernames: %w", err)
		}
	}
	for _, ev := range msgs {
		for _, u := range users {
			if u == ev.SenderID {
				continue
			}
			mentioned := room.Kind == api.RoomDM || Mentions(ev.Text, names[u])
			switch {
			case modes[u] == mode.None:
				continue
			case modes[u] == mode.Mentions && !mentioned:
				continue
			case online[u] && !mentioned:
				continue
			}
			if err := e.count(ctx, room, u, ev, mentioned); err != nil {
				return err
			}
		}
	}
	return nil
}

// count adds one event to userID's window in the room, opening the window
// if there is none, in one transaction with the event's seen-key: the
// event is counted once however often it is delivered.
func (e *Engine) count(ctx context.Context, room Room, userID string, ev api.Event, mentioned bool) error {
	wk, sk := windowKey(room.ID, userID), seenKey(room.ID, ev.Seq, userID)
	for attempt := 0; ; attempt++ {
		items, err := e.Store.BulkGet(ctx, []string{wk, sk})
		if err != nil {
			return fmt.Errorf("read window of %s in %s: %w", userID, room.ID, err)
		}
		if items[1].Found() {
			return nil // counted already: a redelivery
		}
		now := e.opts.Now()
		var w window
		if items[0].Found() {
			if err := json.Unmarshal(items[0].Value, &w); err != nil {
				return fmt.Errorf("decode window of %s in %s: %w", userID, room.ID, err)
			}
		} else {
			w = window{Due: now.Add(e.opts.Window), FirstSeq: ev.Seq, LastSeq: ev.Seq}
		}
		w.Count++
		if mentioned {
			w.Mentions++
		}
		w.FirstSeq, w.LastSeq = min(w.FirstSeq, ev.Seq), max(w.LastSeq, ev.Seq)
		if ev.Seq >= w.LastSeq {
			w.LastSender = ev.SenderID
		}
		w.RoomName, w.RoomKind = room.Name, room.Kind
		val, _ := json.Marshal(w)
		err = e.Store.Transact(ctx, []statestore.Op{
			{Key: sk, Value: []byte(`1`), IfAbsent: true, TTL: e.opts.DedupeTTL},
			{Key: wk, Value: val, ETag: items[0].ETag, IfAbsent: !items[0].Found(), TTL: e.opts.Window + e.opts.DedupeTTL},
		})
		if errors.Is(err, statestore.ErrConflict) && attempt < 50 {
			continue
		}
		if err != nil {
			return fmt.Errorf("count event %d for %s in %s: %w", ev.Seq, userID, room.ID, err)
		}
		// The replica that opens a window flushes it when it closes. A
		// window found past its due time lost its flush (its replica
		// stopped): this replica takes it over and flushes it now, this
		// event included.
		if !items[0].Found() || !now.Before(w.Due) {
			e.sched.add(slot{room.ID, userID}, w.Due)
		}
		if !items[0].Found() {
			// Listed for the sweep, in case this replica stops before
			// the window closes (orphans.go). Failing here loses nothing
			// while this replica lives, so it is logged, not retried.
			if err := e.listDue(ctx, slot{room.ID, userID}, w.Due); err != nil {
				e.Log.WarnContext(ctx, "list a window for the sweep", "room_id", room.ID, "user_id", userID, "err", err)
			}
		}
		return nil
	}
}

// anyMention reports whether any message could mention someone.
func anyMention(msgs []api.Event) bool {
	for _, m := range msgs {
		for i := 0; i < len(m.Text); i++ {
			if m.Text[i] == '@' {
				return true
			}
		}
	}
	return false
}

// Mentions reports whether text mentions @username as a word: not inside
// an e-mail address or a longer name, case-insensitively. A trailing
// period ends the mention ("thanks @bob.").
func Mentions(text, username string) bool {
	if username == "" {
		return false
	}
	n := len(username)
	for i := 0; i+1+n <= len(text); i++ {
		if text[i] != '@' || (i > 0 && nameByte(text[i-1])) {
			continue
		}
		if !equalFold(text[i+1:i+1+n], username) {
			continue
		}
		rest := text[i+1+n:]
		if rest == "" || !nameByte(rest[0]) {
			return true
		}
		if rest[0] == '.' && (len(rest) == 1 || !nameByte(rest[1])) {
			return true
		}
	}
	return false
}

// nameByte reports whether c may be part of a username
// (^[a-z0-9_.-]{3,32}$).
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
