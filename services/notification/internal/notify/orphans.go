package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

// The replica that opens a window keeps its due time in memory and
// flushes it (scheduler). So that a window outlives its replica, opening
// it also lists it in a due bucket: the windows due in one minute, spread
// over dueShards keys. Every replica sweeps, once a minute, the buckets of
// minutes that ended more than sweepGrace ago — the owner had its turn —
// flushing what they list (a window flushed already is gone, and of two
// replicas flushing one window only the one whose delete claims it
// pushes), then deletes them. A shared cursor remembers the last minute
// swept.

const (
	// dueShards is how many keys one minute's bucket is spread over, so
	// that opening windows does not contend on one key.
	dueShards = 32
	// sweepGrace is how long after its due time a window is left to the
	// replica that opened it.
	sweepGrace = 30 * time.Second
	// sweepEvery is how often Run sweeps.
	sweepEvery = time.Minute
	// sweepMinutes bounds the minutes one sweep covers; a cursor further
	// behind (every replica stopped for hours) catches up over sweeps, and
	// a deployment's first sweep looks back that far.
	sweepMinutes = 120
	// dueCursorKey holds the last minute swept (Unix minutes).
	dueCursorKey = "due|cursor"
)

func dueKey(minute int64, shard int) string {
	return "due|" + strconv.FormatInt(minute, 10) + "|" + strconv.Itoa(shard)
}

func dueShard(sl slot) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sl.room + "\x00" + sl.user))
	return int(h.Sum32() % dueShards)
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// dueEntry is one window in a due bucket.
type dueEntry struct {
	Room string `json:"room"`
	User string `json:"user"`
}

type dueBucket struct {
	Windows []dueEntry `json:"windows"`
}

// listDue adds sl, due at due, to its bucket.
func (e *Engine) listDue(ctx context.Context, sl slot, due time.Time) error {
	return statestore.Update(ctx, e.Store, dueKey(unixMinute(due), dueShard(sl)), e.opts.Window+e.opts.DedupeTTL, func(b *dueBucket, _ bool) bool {
		for _, w := range b.Windows {
			if w.Room == sl.room && w.User == sl.user {
				return false
			}
		}
		b.Windows = append(b.Windows, dueEntry{Room: sl.room, User: sl.user})
		return true
	})
}

// SweepOrphans flushes the windows of every minute that ended more than
// sweepGrace ago and has not been swept yet: windows whose replica
// stopped before flushing them. Run calls it every minute.
func (e *Engine) SweepOrphans(ctx context.Context) error {
	last := unixMinute(e.opts.Now().Add(-sweepGrace)) - 1 // the last minute wholly past the grace
	cur, err := e.Store.Get(ctx, dueCursorKey)
	var from int64
	switch {
	case errors.Is(err, statestore.ErrNotFound):
		// The first sweep of a deployment looks back sweepMinutes.
		from = last - sweepMinutes
	case err != nil:
		return err
	default:
		if from, err = strconv.ParseInt(string(cur.Value), 10, 64); err != nil {
			return fmt.Errorf("decode %s: %w", dueCursorKey, err)
		}
	}
	last = min(last, from+sweepMinutes) // far behind: catch up over sweeps
	for m := from + 1; m <= last; m++ {
		keys := make([]string, dueShards)
		for i := range keys {
			keys[i] = dueKey(m, i)
		}
		items, err := e.Store.BulkGet(ctx, keys)
		if err != nil {
			return err
		}
		for _, it := range items {
			if !it.Found() {
				continue
			}
			var b dueBucket
			if err := json.Unmarshal(it.Value, &b); err != nil {
				return fmt.Errorf("decode %s: %w", it.Key, err)
			}
			for _, w := range b.Windows {
				if err := e.flush(ctx, slot{w.Room, w.User}); err != nil {
					return err // the cursor stays: the next sweep retries this minute
				}
			}
			if err := e.Store.Write(ctx, statestore.Op{Key: it.Key, Delete: true, ETag: it.ETag}); err != nil && !errors.Is(err, statestore.ErrConflict) {
				return err
			}
		}
	}
	if last <= from {
		return nil
	}
	// The cursor only moves forward; another replica's sweep may have
	// moved it meanwhile, which is as good.
	op := statestore.Op{Key: dueCursorKey, Value: []byte(strconv.FormatInt(last, 10))}
	if cur.ETag != "" {
		op.ETag = cur.ETag
	} else {
		op.IfAbsent = true
	}
	if err := e.Store.Write(ctx, op); err != nil && !errors.Is(err, statestore.ErrConflict) {
		return err
	}
	return nil
}
