package room

import (
	"slices"
	"time"

	"github.com/papochat/papo/api"
)

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
