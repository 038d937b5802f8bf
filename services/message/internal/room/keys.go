package room

import (
	"fmt"
	"net/url"
	"strconv"

	json "github.com/goccy/go-json"

	"github.com/papochat/papo/platform/statestore"
)

// Storage keys. Every read is a Get or a BulkGet of keys computed from ids;
// nothing is ever found by scanning. User and client ids are escaped so a
// "|" inside one cannot make two different tuples share a key. docs/message.md
// describes each key.
func roomKey(roomID string) string { return "room|" + roomID }

func eventKey(roomID string, seq int64) string {
	return "ev|" + roomID + "|" + strconv.FormatInt(seq, 10)
}

func memberKey(roomID, userID string) string {
	return "member|" + roomID + "|" + url.QueryEscape(userID)
}

func membersKey(roomID string) string { return "members|" + roomID }

func idemKey(roomID, senderID, clientID string) string {
	return "idem|" + roomID + "|" + url.QueryEscape(senderID) + "|" + url.QueryEscape(clientID)
}

func userRoomsKey(userID string) string { return "userrooms|" + url.QueryEscape(userID) }

// publicRoomsKey holds the first page of the index of public rooms
// (public.go).
const publicRoomsKey = "rooms|public"

// decode unmarshals a found item into v.
func decode(it statestore.Item, v any) error {
	if err := json.Unmarshal(it.Value, v); err != nil {
		return fmt.Errorf("decode %q: %w", it.Key, err)
	}
	return nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own record types are encoded; they always marshal.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return b
}

// guarded returns the write of v to the key of it, conditioned on it being
// unchanged since it was read: its ETag when it existed, absence when not.
// It is used for single writes only (some stores ignore IfAbsent inside a
// transaction).
func guarded(it statestore.Item, v any) statestore.Op {
	op := statestore.Op{Key: it.Key, Value: encode(v)}
	if it.Found() {
		op.ETag = it.ETag
	} else {
		op.IfAbsent = true
	}
	return op
}
