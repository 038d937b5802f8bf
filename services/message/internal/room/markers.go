package room

import (
	"slices"
	"time"
)

// Sending a message moves the sender's read marker to it (docs/message.md,
// "Read markers and unread"). Writing that marker to the sender's member
// record on every message would cost a write per message; instead a
// replica writes its rooms' markers, all together, at most every
// markerEvery. Until then
// they are owed: every new head of the room carries them in its tail, so
// they are durable (any replica that materializes the head moves them,
// and the unread count reads them from the tail), and a timer makes sure
// a room that falls quiet gets them written.
const markerEvery = time.Second

// markerAccount is what a replica owes one room: the markers not written
// yet, by user, and the highest seq written for each user lately (a tail
// that still carries a marker written meanwhile does not make it owed
// again).
type markerAccount struct {
	owed    map[string]mark
	written map[string]int64
	last    time.Time // when the room's markers were last written
}

// owe records the markers of a committed tail as owed, but those already
// written.
func (w *writer) owe(roomID string, marks []mark) {
	if len(marks) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.account(roomID)
	for _, mk := range marks {
		if mk.Seq <= a.written[mk.UserID] || mk.Seq <= a.owed[mk.UserID].Seq {
			continue
		}
		a.owed[mk.UserID] = mk
	}
}

// account returns the room's account, making it; w.mu is held.
func (w *writer) account(roomID string) *markerAccount {
	a := w.markers[roomID]
	if a == nil {
		a = &markerAccount{owed: map[string]mark{}, written: map[string]int64{}}
		w.markers[roomID] = a
	}
	return a
}

// debtOf returns the markers owed in a room, for the next tail.
func (w *writer) debtOf(roomID string) []mark {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.markers[roomID]
	if a == nil || len(a.owed) == 0 {
		return nil
	}
	out := make([]mark, 0, len(a.owed))
	for _, mk := range a.owed {
		out = append(out, mk)
	}
	slices.SortFunc(out, func(x, y mark) int { return int(x.Seq - y.Seq) })
	return out
}

// dueMarks takes the owed markers of every room as paid when the
// replica's markers were last written markerEvery ago or more, or when
// flush (a planned flush, or Quiesce); otherwise it plans a flush. The
// markers of all rooms are written together, once a second at most, so
// they cost one read and one transaction a second, not one per room, and
// the materializer's other calls have none (their events can ride on a
// round: ride.go).
func (w *writer) dueMarks(now time.Time, flush bool) []markMove {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !flush && now.Sub(w.marksLast) < markerEvery {
		if !w.marksTimer && w.owing() {
			w.marksTimer = true
			time.AfterFunc(markerEvery-now.Sub(w.marksLast), func() {
				w.mu.Lock()
				w.marksTimer = false
				w.mu.Unlock()
				w.materializer.push(&committedRound{flushMarks: true})
			})
		}
		return nil
	}
	var out []markMove
	for roomID, a := range w.markers {
		if len(a.owed) == 0 {
			// Nothing owed: forget a room quiet for a while.
			if now.Sub(a.last) > 60*markerEvery {
				delete(w.markers, roomID)
			}
			continue
		}
		for user, mk := range a.owed {
			out = append(out, markMove{roomID, mk})
			a.written[user] = max(a.written[user], mk.Seq)
			delete(a.owed, user)
		}
		a.last = now
	}
	if len(out) > 0 {
		w.marksLast = now
	}
	return out
}

// owing reports whether any marker is owed; w.mu is held.
func (w *writer) owing() bool {
	for _, a := range w.markers {
		if len(a.owed) > 0 {
			return true
		}
	}
	return false
}

// unpaid owes moves again after their write failed.
func (w *writer) unpaid(moves []markMove) {
	if len(moves) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, mv := range moves {
		a := w.account(mv.room)
		if mv.mk.Seq > a.owed[mv.mk.UserID].Seq {
			a.owed[mv.mk.UserID] = mv.mk
		}
		// Not written after all: a later tail may owe it again.
		if a.written[mv.mk.UserID] == mv.mk.Seq {
			delete(a.written, mv.mk.UserID)
		}
	}
}

// mergeMarks returns a with the markers of b that are newer, one per user.
func mergeMarks(a, b []mark) []mark {
	if len(b) == 0 {
		return a
	}
	out := slices.Clone(a)
	for _, mk := range b {
		i := slices.IndexFunc(out, func(x mark) bool { return x.UserID == mk.UserID })
		switch {
		case i < 0:
			out = append(out, mk)
		case mk.Seq > out[i].Seq:
			out[i] = mk
		}
	}
	return out
}

// flushMarkers has every owed marker written now.
func (w *writer) flushMarkers() {
	w.mu.Lock()
	owing := w.owing()
	w.mu.Unlock()
	if owing {
		w.materializer.push(&committedRound{flushMarks: true})
	}
}
