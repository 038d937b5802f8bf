package statestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/papochat/papo/platform/wait"
)

// UpdateAttempts bounds Update's re-reads after a conflict.
const UpdateAttempts = 50

// Update is a read-modify-write of the JSON value at key with one
// conditional write: the ETag it was read with, or insert-if-absent when
// it was missing. change gets the current value (the zero value when the
// key is missing) and reports whether to write it back; ttl, when
// positive, expires the key. A conflict re-reads and runs change again
// (Retry), up to UpdateAttempts times, then returns ErrConflict.
func Update[T any](ctx context.Context, s Store, key string, ttl time.Duration, change func(v *T, found bool) bool) error {
	return Retry(ctx, UpdateAttempts, func() error {
		var v T
		it, err := s.Get(ctx, key)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if found {
			if err := json.Unmarshal(it.Value, &v); err != nil {
				return fmt.Errorf("decode %s: %w", key, err)
			}
		}
		if !change(&v, found) {
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		return s.Write(ctx, Op{Key: key, Value: b, ETag: it.ETag, IfAbsent: !found, TTL: ttl})
	})
}

// Retry is the one loop of optimistic concurrency: it runs attempt (a
// read, a decision and a conditional write) until it returns anything but
// ErrConflict, at most attempts times, with a random pause between
// attempts (full jitter over a window doubling from 1 ms to 32 ms, so
// racing writers spread out). It returns attempt's last error, ErrConflict
// (as attempt wrapped it) when every attempt lost the race, or ctx's error
// when ctx ended during a pause.
func Retry(ctx context.Context, attempts int, attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		if !errors.Is(err, ErrConflict) || i+1 >= attempts {
			return err
		}
		if !wait.For(ctx, time.Duration(rand.Int64N(int64(time.Millisecond)<<min(i, 5)))) {
			return ctx.Err()
		}
	}
}
