package room

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/papochat/papo/api"
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

// publicRoomsKey holds the index of public rooms.
const publicRoomsKey = "rooms|public"

// roomRecord is a room's metadata and the head of its log, in one key: the
// head's ETag guards every append, so metadata, last_seq and the message
// count move together.
type roomRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastSeq   int64     `json:"last_seq"`
	// Messages counts the room's events of type message; unread counts are
	// differences of it (see memberRecord).
	Messages int64 `json:"messages"`
	// Members is the pair of a DM; other rooms keep members in membersKey.
	Members []string `json:"members,omitempty"`
}

func (r roomRecord) api() api.Room {
	return api.Room{
		ID: r.ID, Name: r.Name, Kind: r.Kind, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
		LastSeq: r.LastSeq, Members: r.Members,
	}
}

// memberRecord says a user is in a room, and where the user's read marker
// is. ReadMsgs is the room's message count at ReadSeq, so the user's unread
// count is roomRecord.Messages - ReadMsgs without reading any event.
type memberRecord struct {
	JoinedAt time.Time `json:"joined_at"`
	ReadSeq  int64     `json:"read_seq"`
	ReadMsgs int64     `json:"read_msgs"`
}

// eventRecord is a stored room event: the public event plus what the log
// needs to answer unread counts and to erase a deleted message.
type eventRecord struct {
	api.Event
	// Msgs is the room's message count up to and including this event.
	Msgs int64 `json:"msgs"`
	// Edits lists the seqs of edit events of this message, so a delete can
	// erase their text too.
	Edits   []int64 `json:"edits,omitempty"`
	Deleted bool    `json:"deleted,omitempty"`
}

// idemRecord maps (room, sender, client_id) to the seq it was stored as.
type idemRecord struct {
	Seq int64 `json:"seq"`
}

// idList is a set of ids kept in one key (a user's rooms, a room's members,
// the public rooms), changed by ETag-guarded read-modify-write.
type idList struct {
	IDs []string `json:"ids"`
}

func (l idList) has(id string) bool {
	for _, x := range l.IDs {
		if x == id {
			return true
		}
	}
	return false
}

func (l idList) with(id string) idList {
	if l.has(id) {
		return l
	}
	return idList{IDs: append(append([]string{}, l.IDs...), id)}
}

func (l idList) without(id string) idList {
	out := idList{IDs: make([]string, 0, len(l.IDs))}
	for _, x := range l.IDs {
		if x != id {
			out.IDs = append(out.IDs, x)
		}
	}
	return out
}

// decode unmarshals a found item into v.
func decode(it statestore.Item, v any) error {
	if err := json.Unmarshal(it.Value, v); err != nil {
		return fmt.Errorf("decode %q: %w", it.Key, err)
	}
	return nil
}

// decodeList returns the idList in it, empty when it is missing.
func decodeList(it statestore.Item) (idList, error) {
	var l idList
	if !it.Found() {
		return l, nil
	}
	return l, decode(it, &l)
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
func guarded(it statestore.Item, v any) statestore.Op {
	op := statestore.Op{Key: it.Key, Value: encode(v)}
	if it.Found() {
		op.ETag = it.ETag
	} else {
		op.IfAbsent = true
	}
	return op
}

// bulkGet reads keys in one call.
func (s *Service) bulkGet(ctx context.Context, keys ...string) ([]statestore.Item, error) {
	items, err := s.store.BulkGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	if len(items) != len(keys) {
		return nil, fmt.Errorf("bulk get of %d keys returned %d items", len(keys), len(items))
	}
	return items, nil
}
