package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/services/notification/internal/mode"
)

// Handle makes the decisions for one batch of room events, of one room
// or several (each event names its room). An error means nothing is lost
// by trying the whole batch again: every recipient's count is guarded by
// a per-event key, so a retry counts nobody twice.
//
// What it costs: membership events update the cached rooms; a room with
// messages is looked up only when it is not cached; which members have a
// device is known in memory. Only for members with a device, one read of
// the modes and one presence call serve every room of the batch, and
// each recipient's messages in a room are counted in one transaction.
func (e *Engine) Handle(ctx context.Context, batch events.RoomEventBatch) error {
	e.Metrics.batches.Inc()
	var roomIDs []string
	msgs := map[string][]api.Event{}
	for _, ev := range batch.Events {
		if ev.RoomID == "" {
			ev.RoomID = batch.RoomID // a batch of one room from an older message service
		}
		if ev.RoomID == "" {
			e.Log.WarnContext(ctx, "room event without a room id; skipped", "seq", ev.Seq, "type", ev.Type)
			continue
		}
		switch ev.Type {
		case api.EventMemberJoined, api.EventMemberLeft:
			e.rooms.observe(ev)
		case api.EventMessage:
			if ev.SenderID == "" {
				continue
			}
			if _, ok := msgs[ev.RoomID]; !ok {
				roomIDs = append(roomIDs, ev.RoomID)
			}
			msgs[ev.RoomID] = append(msgs[ev.RoomID], ev)
		}
	}
	if len(roomIDs) == 0 {
		return nil
	}
	// A room that cannot be looked up fails the batch (a retry), but the
	// other rooms are decided first: a retry does not count them twice.
	var failed []error
	rooms := make([]Room, 0, len(roomIDs))
	var members []string
	for _, id := range roomIDs {
		room, err := e.rooms.get(ctx, id)
		if err != nil {
			failed = append(failed, fmt.Errorf("room %s: %w", id, err))
			continue
		}
		rooms = append(rooms, room)
		members = append(members, room.Members...)
	}
	if err := e.decide(ctx, rooms, msgs, members); err != nil {
		failed = append(failed, err)
	}
	return errors.Join(failed...)
}

// decide counts the messages of rooms for their members who should hear
// of them.
func (e *Engine) decide(ctx context.Context, rooms []Room, msgs map[string][]api.Event, members []string) error {
	if len(rooms) == 0 {
		return nil
	}
	// Only users with a device can be pushed; everything else is read
	// for them alone.
	has, err := e.Devices.WithDevices(ctx, members)
	if err != nil {
		return err
	}
	var pairs []mode.Pair
	for _, room := range rooms {
		for _, u := range room.Members {
			if has[u] {
				pairs = append(pairs, mode.Pair{Room: room.ID, User: u})
			}
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	modes, err := e.Modes.ForPairs(ctx, pairs)
	if err != nil {
		return err
	}
	// Presence matters for members who hear of every message (mode all)
	// outside DMs, usernames for members who could be mentioned.
	byRoom := map[string]Room{}
	for _, r := range rooms {
		byRoom[r.ID] = r
	}
	var askPresence, askNames []string
	presenceAsked, namesAsked := map[string]bool{}, map[string]bool{}
	for _, p := range pairs {
		room, m := byRoom[p.Room], modes[p]
		if m == mode.None || room.Kind == api.RoomDM {
			continue
		}
		if m == mode.All && !presenceAsked[p.User] {
			presenceAsked[p.User] = true
			askPresence = append(askPresence, p.User)
		}
		if anyMention(msgs[p.Room]) && !namesAsked[p.User] {
			namesAsked[p.User] = true
			askNames = append(askNames, p.User)
		}
	}
	online := map[string]bool{}
	if len(askPresence) > 0 {
		if online, err = e.Presence.Online(ctx, askPresence); err != nil {
			return fmt.Errorf("presence: %w", err)
		}
	}
	names := map[string]string{}
	if len(askNames) > 0 {
		if names, err = e.Users.Usernames(ctx, askNames); err != nil {
			return fmt.Errorf("usernames: %w", err)
		}
	}
	for _, p := range pairs {
		room, m := byRoom[p.Room], modes[p]
		if m == mode.None {
			continue
		}
		var counted []countedEvent
		for _, ev := range msgs[p.Room] {
			if p.User == ev.SenderID {
				continue
			}
			mentioned := room.Kind == api.RoomDM || Mentions(ev.Text, names[p.User])
			if (m == mode.Mentions || online[p.User]) && !mentioned {
				continue
			}
			counted = append(counted, countedEvent{ev, mentioned})
		}
		if err := e.count(ctx, room, p.User, counted); err != nil {
			return err
		}
	}
	return nil
}

// countedEvent is a message to count into a window, and whether it
// mentions the window's user.
type countedEvent struct {
	api.Event
	mentioned bool
}

// countChunk bounds the events counted in one transaction.
const countChunk = 50

// countAttempts bounds count's re-reads after a conflicting writer (a
// replica counting into the same window, or flushing it).
const countAttempts = 51

// count adds events to userID's window in the room, opening the window if
// there is none, in one transaction with the events' seen-keys: each event
// is counted once however often it is delivered.
func (e *Engine) count(ctx context.Context, room Room, userID string, evs []countedEvent) error {
	for len(evs) > countChunk {
		if err := e.count(ctx, room, userID, evs[:countChunk]); err != nil {
			return err
		}
		evs = evs[countChunk:]
	}
	if len(evs) == 0 {
		return nil
	}
	wk := windowKey(room.ID, userID)
	keys := []string{wk}
	for _, ev := range evs {
		keys = append(keys, seenKey(room.ID, ev.Seq, userID))
	}
	return statestore.Retry(ctx, countAttempts, func() error {
		items, err := e.Store.BulkGet(ctx, keys)
		if err != nil {
			return fmt.Errorf("read window of %s in %s: %w", userID, room.ID, err)
		}
		now := e.opts.Now()
		var w window
		if items[0].Found() {
			if err := json.Unmarshal(items[0].Value, &w); err != nil {
				return fmt.Errorf("decode window of %s in %s: %w", userID, room.ID, err)
			}
		}
		var ops []statestore.Op
		for i, ev := range evs {
			if items[i+1].Found() {
				continue // counted already: a redelivery
			}
			if !items[0].Found() && len(ops) == 0 {
				w = window{Due: now.Add(e.opts.Window), FirstSeq: ev.Seq, LastSeq: ev.Seq}
			}
			w.Count++
			if ev.mentioned {
				w.Mentions++
			}
			w.FirstSeq, w.LastSeq = min(w.FirstSeq, ev.Seq), max(w.LastSeq, ev.Seq)
			if ev.Seq >= w.LastSeq {
				w.LastSender = ev.SenderID
			}
			ops = append(ops, statestore.Op{Key: keys[i+1], Value: []byte(`1`), IfAbsent: true, TTL: e.opts.DedupeTTL})
		}
		if len(ops) == 0 {
			return nil
		}
		w.RoomName, w.RoomKind = room.Name, room.Kind
		val, _ := json.Marshal(w)
		ops = append(ops, statestore.Op{Key: wk, Value: val, ETag: items[0].ETag, IfAbsent: !items[0].Found(), TTL: e.opts.Window + e.opts.DedupeTTL})
		if err := e.Store.Transact(ctx, ops); err != nil {
			return fmt.Errorf("count %d events for %s in %s: %w", len(ops)-1, userID, room.ID, err)
		}
		e.Metrics.counted.Add(float64(len(evs)))
		// The replica that opens a window flushes it when it closes. A
		// window found past its due time lost its flush (its replica
		// stopped): this replica takes it over and flushes it now, these
		// events included.
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
	})
}
