package room

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	json "github.com/goccy/go-json"

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

// publicRoomsKey holds the first page of the index of public rooms
// (public.go).
const publicRoomsKey = "rooms|public"

// roomRecord is a room's head: its metadata, the end of its log, and the
// tail — what the last change committed. Writing the head with the ETag it
// was read with is the ONLY commit point of any change to a room: one
// conditional single-key write, which every store does atomically (a
// multi-key transaction is not undone on Redis when its ETag check fails).
// Every other key is a materialization of some head's tail, written with
// idempotent, order-independent writes (see materialize).
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
	// MemberCount is how many members the room has, kept by every
	// membership change since MembersCounted (rooms made before counting
	// began have neither, and show no count).
	MemberCount    int64 `json:"member_count,omitempty"`
	MembersCounted bool  `json:"members_counted,omitempty"`
	// Encrypted marks an end-to-end encrypted DM: its messages and edits
	// carry envelopes, never text (docs/e2ee.md). Set at creation only.
	Encrypted bool `json:"encrypted,omitempty"`
	// Deletes are the room's recent deletes, oldest first: history serves
	// their messages, and the edits of them, without text. A delete leaves
	// the head keepDeletes after its commit, once its text is erased for
	// good (see erase.go).
	Deletes []deletion `json:"deletes,omitempty"`
	// Deleted lists the seqs of messages deleted before Deletes existed;
	// they stay (their edits may not be in the edits index).
	Deleted []int64 `json:"deleted,omitempty"`
	Tail    tail    `json:"tail"`
	// Commit names the write that committed this head (a random token per
	// commit round), so a writer whose multi-head transaction failed can
	// tell which of its heads landed anyway.
	Commit string `json:"commit,omitempty"`
}

// tail is what one committed change adds; until it is materialized it is
// read from the head itself.
type tail struct {
	Events  []eventRecord `json:"events,omitempty"`
	Idem    []idemEntry   `json:"idem,omitempty"`
	Marks   []mark        `json:"marks,omitempty"`
	Members []memberOp    `json:"members,omitempty"`
	// Public adds the room to the public index.
	Public bool `json:"public,omitempty"`
}

type idemEntry struct {
	SenderID string `json:"sender_id"`
	ClientID string `json:"client_id"`
	Seq      int64  `json:"seq"`
}

// mark moves a user's read marker forward (a sender has read up to its own
// message).
type mark struct {
	UserID string `json:"user_id"`
	Seq    int64  `json:"seq"`
	Msgs   int64  `json:"msgs"`
}

// memberOp is a join (In) or a leave at the seq of its member_joined or
// member_left event in the log (a room's founders join at seq 1 and 2;
// rooms created before founding events were logged have ops at seq 0).
type memberOp struct {
	UserID   string    `json:"user_id"`
	Seq      int64     `json:"seq"`
	In       bool      `json:"in"`
	At       time.Time `json:"at"`
	ReadMsgs int64     `json:"read_msgs"`
}

func (r roomRecord) api() api.Room {
	return api.Room{
		ID: r.ID, Name: r.Name, Kind: r.Kind, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
		LastSeq: r.LastSeq, Members: r.Members, Encrypted: r.Encrypted,
		MemberCount: r.memberCount(),
	}
}

// memberCount is the room's member count, 0 when it was never counted.
func (r roomRecord) memberCount() int64 {
	if !r.MembersCounted {
		return 0
	}
	return r.MemberCount
}

// after returns what of the tail comes after seq: its events, idempotency
// entries and marks of later seqs (a tail's membership ops and public flag
// are materialized before any later commit, so they are not carried).
func (t tail) after(seq int64) tail {
	var out tail
	for _, e := range t.Events {
		if e.Seq > seq {
			out.Events = append(out.Events, e)
		}
	}
	for _, e := range t.Idem {
		if e.Seq > seq {
			out.Idem = append(out.Idem, e)
		}
	}
	for _, mk := range t.Marks {
		if mk.Seq > seq {
			out.Marks = append(out.Marks, mk)
		}
	}
	return out
}

// clone returns a copy of the tail that shares no slice with it.
func (t tail) clone() tail {
	return tail{
		Events: slices.Clone(t.Events), Idem: slices.Clone(t.Idem), Marks: slices.Clone(t.Marks),
		Members: slices.Clone(t.Members), Public: t.Public,
	}
}

// tailIdem returns the seq the tail assigned to senderID's clientID.
func (r roomRecord) tailIdem(senderID, clientID string) (int64, bool) {
	for _, e := range r.Tail.Idem {
		if e.SenderID == senderID && e.ClientID == clientID {
			return e.Seq, true
		}
	}
	return 0, false
}

// tailEvent returns the event at seq if the tail holds it.
func (r roomRecord) tailEvent(seq int64) (eventRecord, bool) {
	for _, e := range r.Tail.Events {
		if e.Seq == seq {
			return e, true
		}
	}
	return eventRecord{}, false
}

func (r roomRecord) deleted(seq int64) bool {
	return slices.ContainsFunc(r.Deletes, func(d deletion) bool { return d.Seq == seq }) || slices.Contains(r.Deleted, seq)
}

// deletion is a delete in the head: the deleted message's seq and when the
// delete was committed.
type deletion struct {
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"`
}

// memberRecord is a user's membership of a room as of the join or leave
// at Seq (a left member keeps a record with In false, so a late, repeated
// materialization of an older join cannot bring the user back), and where
// the user's read marker is. ReadMsgs is the room's message count at
// ReadSeq, so unread is roomRecord.Messages - ReadMsgs without reading events.
type memberRecord struct {
	Seq      int64     `json:"seq"`
	In       bool      `json:"in"`
	JoinedAt time.Time `json:"joined_at"`
	ReadSeq  int64     `json:"read_seq"`
	ReadMsgs int64     `json:"read_msgs"`
}

// eventRecord is a stored room event: the public event plus the room's
// message count up to and including it. Event keys are written once,
// and rewritten without text when their message is deleted (erase.go).
type eventRecord struct {
	api.Event
	Msgs int64 `json:"msgs"`
}

// idemRecord maps (room, sender, client_id) to the seq it was stored as.
type idemRecord struct {
	Seq int64 `json:"seq"`
}

// setEntry is one id of a membership set, as of the op at Seq.
type setEntry struct {
	ID  string `json:"id"`
	Seq int64  `json:"seq"`
	In  bool   `json:"in"`
}

// memberSet is a set of ids (a room's members, a user's rooms) changed by
// joins and leaves. Each entry remembers the seq of the op that set it, so
// applying ops is idempotent and a stale op never undoes a newer one.
type memberSet struct {
	Entries []setEntry `json:"entries"`
}

// apply records op for id; it reports whether the set changed.
func (s *memberSet) apply(id string, seq int64, in bool) bool {
	for i, e := range s.Entries {
		if e.ID == id {
			if seq <= e.Seq {
				return false
			}
			s.Entries[i] = setEntry{ID: id, Seq: seq, In: in}
			return true
		}
	}
	s.Entries = append(s.Entries, setEntry{ID: id, Seq: seq, In: in})
	return true
}

func (s memberSet) ids() []string {
	out := []string{}
	for _, e := range s.Entries {
		if e.In {
			out = append(out, e.ID)
		}
	}
	return out
}

// idList is a page of the public-room index: ids are only ever added.
type idList struct {
	IDs []string `json:"ids"`
}

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

// getItem reads one key; a missing key is an Item that is not Found.
func (s *Service) getItem(ctx context.Context, key string) (statestore.Item, error) {
	it, err := s.store.Get(ctx, key)
	if errors.Is(err, statestore.ErrNotFound) {
		return statestore.Item{Key: key}, nil
	}
	return it, err
}

// readHead reads a room's head; found is false for an unknown room.
func (s *Service) readHead(ctx context.Context, roomID string) (head roomRecord, it statestore.Item, found bool, err error) {
	it, err = s.getItem(ctx, roomKey(roomID))
	if err != nil || !it.Found() {
		return head, it, false, err
	}
	return head, it, true, decode(it, &head)
}

// update is a read-modify-write of one key with a single conditional
// write, retried on conflict. change gets the current value (zero when the
// key is missing) and reports whether to write it back.
func update[T any](ctx context.Context, s *Service, key string, change func(v *T, found bool) bool) error {
	return s.retry(ctx, func() error {
		it, err := s.getItem(ctx, key)
		if err != nil {
			return err
		}
		var v T
		if it.Found() {
			if err := decode(it, &v); err != nil {
				return err
			}
		}
		if !change(&v, it.Found()) {
			return nil
		}
		return s.store.Write(ctx, guarded(it, v))
	})
}

// materialize writes a committed head's tail to the keys it belongs in.
// Every write is idempotent and cannot undo a newer one (event and
// idempotency keys are written once with the only value they can have;
// membership writes compare seqs; the one exception, text written back
// after a delete erased it, is erased again: see erase.go), so any
// number of replicas may materialize the same tail, in any order, any
// number of times. An append materializes the tail it found before
// committing its own, so every event below the head's tail is in its
// event key.
func (s *Service) materialize(ctx context.Context, head roomRecord) error {
	t := head.Tail
	if n := len(t.Events); n > 0 || len(t.Idem) > 0 {
		done := false
		if n > 0 {
			it, err := s.getItem(ctx, eventKey(head.ID, t.Events[n-1].Seq))
			if err != nil {
				return err
			}
			done = it.Found()
		}
		if !done {
			ops := make([]statestore.Op, 0, n+len(t.Idem))
			for _, e := range t.Events {
				ops = append(ops, statestore.Op{Key: eventKey(head.ID, e.Seq), Value: encode(e)})
			}
			for _, e := range t.Idem {
				ops = append(ops, statestore.Op{Key: idemKey(head.ID, e.SenderID, e.ClientID), Value: encode(idemRecord{Seq: e.Seq})})
			}
			// Bounded, so that a stalled write of a message's text cannot
			// land long after its delete (see erase.go).
			wctx, cancel := context.WithTimeout(ctx, materializeTimeout)
			err := s.store.Transact(wctx, ops)
			cancel()
			if err != nil {
				return fmt.Errorf("materialize events of room %s: %w", head.ID, err)
			}
		}
	}
	// Edits are indexed under their target and deletes erase the target's
	// text, outside the check above: a tail whose events were written by a
	// materializer that failed after them is finished here.
	if err := s.materializeEdits(ctx, head); err != nil {
		return err
	}
	for _, op := range t.Members {
		err := update(ctx, s, memberKey(head.ID, op.UserID), func(m *memberRecord, found bool) bool {
			if found && op.Seq <= m.Seq {
				return false
			}
			*m = memberRecord{Seq: op.Seq, In: op.In}
			if op.In {
				m.JoinedAt, m.ReadSeq, m.ReadMsgs = op.At, op.Seq, op.ReadMsgs
			}
			return true
		})
		if err == nil {
			err = update(ctx, s, membersKey(head.ID), func(set *memberSet, _ bool) bool {
				return set.apply(op.UserID, op.Seq, op.In)
			})
		}
		if err == nil {
			err = update(ctx, s, userRoomsKey(op.UserID), func(set *memberSet, _ bool) bool {
				return set.apply(head.ID, op.Seq, op.In)
			})
		}
		if err != nil {
			return fmt.Errorf("materialize membership of %s in room %s: %w", op.UserID, head.ID, err)
		}
	}
	for _, mk := range t.Marks {
		if err := s.advanceMarker(ctx, head.ID, mk); err != nil {
			return err
		}
	}
	if t.Public {
		if err := s.indexPublic(ctx, head.ID); err != nil {
			return fmt.Errorf("add room %s to the public index: %w", head.ID, err)
		}
	}
	return nil
}

// materializeEdits indexes the edits of head's tail under their targets
// and erases the text of the messages its deletes delete.
func (s *Service) materializeEdits(ctx context.Context, head roomRecord) error {
	for _, e := range head.Tail.Events {
		switch e.Type {
		case api.EventEdit:
			if err := s.indexEdit(ctx, head.ID, e); err != nil {
				return fmt.Errorf("materialize edit %d of room %s: %w", e.Seq, head.ID, err)
			}
		case api.EventDelete:
			if err := s.erase(ctx, head.ID, e.TargetSeq); err != nil {
				return fmt.Errorf("materialize delete %d of room %s: %w", e.Seq, head.ID, err)
			}
			s.eraseLater(head.ID, e.TargetSeq, s.eraseAgain)
		}
	}
	return nil
}

// advanceMarker moves a member's read marker forward to mk; it never moves
// it back and never touches a member who left or joined after mk.
func (s *Service) advanceMarker(ctx context.Context, roomID string, mk mark) error {
	err := update(ctx, s, memberKey(roomID, mk.UserID), func(m *memberRecord, found bool) bool {
		if !found || !m.In || m.Seq > mk.Seq || m.ReadSeq >= mk.Seq {
			return false
		}
		m.ReadSeq, m.ReadMsgs = mk.Seq, mk.Msgs
		return true
	})
	if err != nil {
		return fmt.Errorf("move the read marker of %s in room %s: %w", mk.UserID, roomID, err)
	}
	return nil
}
