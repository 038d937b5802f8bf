// Package mode keeps each user's notification mode per room: all (the
// default), mentions only, or none.
package mode

import (
	"context"
	"errors"
	"fmt"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/statestore"
)

// Modes.
const (
	All      = "all"
	Mentions = "mentions"
	None     = "none"
)

// Valid reports whether m is a mode.
func Valid(m string) bool { return m == All || m == Mentions || m == None }

// Store keeps modes in a statestore.Store, one key per user and room. The
// default mode, all, is the absence of a key.
type Store struct {
	store statestore.Store
}

// NewStore returns a Store over store.
func NewStore(store statestore.Store) *Store { return &Store{store: store} }

func key(roomID, userID string) string { return "mode|" + roomID + "|" + userID }

// Set sets userID's mode in roomID.
func (s *Store) Set(ctx context.Context, userID, roomID, m string) error {
	if !Valid(m) {
		return apierror.Invalidf("invalid_mode", `mode must be "all", "mentions" or "none"`)
	}
	op := statestore.Op{Key: key(roomID, userID), Value: []byte(`"` + m + `"`)}
	if m == All {
		op = statestore.Op{Key: key(roomID, userID), Delete: true}
	}
	if err := s.store.Write(ctx, op); err != nil {
		return fmt.Errorf("set mode of %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// Get returns userID's mode in roomID.
func (s *Store) Get(ctx context.Context, userID, roomID string) (string, error) {
	it, err := s.store.Get(ctx, key(roomID, userID))
	if errors.Is(err, statestore.ErrNotFound) {
		return All, nil
	}
	if err != nil {
		return "", fmt.Errorf("get mode of %s in %s: %w", userID, roomID, err)
	}
	return decode(it.Value), nil
}

// ForUsers returns the mode of each of userIDs in roomID, in one read.
func (s *Store) ForUsers(ctx context.Context, roomID string, userIDs []string) (map[string]string, error) {
	pairs := make([]Pair, len(userIDs))
	for i, u := range userIDs {
		pairs[i] = Pair{Room: roomID, User: u}
	}
	modes, err := s.ForPairs(ctx, pairs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(userIDs))
	for _, p := range pairs {
		out[p.User] = modes[p]
	}
	return out, nil
}

// Pair is one user in one room.
type Pair struct{ Room, User string }

// ForPairs returns the mode of each pair, whatever their rooms, in one
// read.
func (s *Store) ForPairs(ctx context.Context, pairs []Pair) (map[Pair]string, error) {
	out := make(map[Pair]string, len(pairs))
	if len(pairs) == 0 {
		return out, nil
	}
	keys := make([]string, len(pairs))
	for i, p := range pairs {
		keys[i] = key(p.Room, p.User)
	}
	items, err := s.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("get modes of %d members: %w", len(pairs), err)
	}
	for i, it := range items {
		out[pairs[i]] = All
		if it.Found() {
			out[pairs[i]] = decode(it.Value)
		}
	}
	return out, nil
}

func decode(b []byte) string {
	if len(b) >= 2 && b[0] == '"' {
		b = b[1 : len(b)-1]
	}
	if m := string(b); Valid(m) {
		return m
	}
	return All
}
