package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
	"github.com/papochat/papo/services/notification/internal/device"
	"github.com/papochat/papo/services/notification/internal/mode"
	"github.com/papochat/papo/services/notification/internal/notify"
	"github.com/papochat/papo/services/notification/internal/push"
	"github.com/papochat/papo/services/notification/internal/upstream"
)

// These tests count what a batch of room events costs the consumer: the
// store operations and the service invocations, through wrapping fakes of
// statestore.Store and upstream.Invoker.

// countingStore counts the operations that reach a store, by kind.
type countingStore struct {
	statestore.Store
	mu sync.Mutex
	n  ioCount
}

// ioCount is what one piece of work cost.
type ioCount struct {
	Gets, BulkGets, Writes, Transacts int
	Invocations                       map[string]int // by app-id
}

func (c ioCount) reads() int { return c.Gets + c.BulkGets }

func (c ioCount) String() string {
	return fmt.Sprintf("%d gets, %d bulk gets, %d writes, %d transactions, invocations %v",
		c.Gets, c.BulkGets, c.Writes, c.Transacts, c.Invocations)
}

func (c *countingStore) Get(ctx context.Context, key string) (statestore.Item, error) {
	c.mu.Lock()
	c.n.Gets++
	c.mu.Unlock()
	return c.Store.Get(ctx, key)
}

func (c *countingStore) BulkGet(ctx context.Context, keys []string) ([]statestore.Item, error) {
	c.mu.Lock()
	c.n.BulkGets++
	c.mu.Unlock()
	return c.Store.BulkGet(ctx, keys)
}

func (c *countingStore) Write(ctx context.Context, op statestore.Op) error {
	c.mu.Lock()
	c.n.Writes++
	c.mu.Unlock()
	return c.Store.Write(ctx, op)
}

func (c *countingStore) Transact(ctx context.Context, ops []statestore.Op) error {
	c.mu.Lock()
	c.n.Transacts++
	c.mu.Unlock()
	return c.Store.Transact(ctx, ops)
}

// sidecarFake answers the service invocations notification makes (the
// members route of message, presence, auth's users) from memory, counting
// them by app-id.
type sidecarFake struct {
	mu     sync.Mutex
	calls  map[string]int
	rooms  map[string]api.Room // with Members
	online map[string]bool
}

func (f *sidecarFake) Do(_ context.Context, appID, _, path string, _ http.Header, _, out any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[appID]++
	var ans any
	switch appID {
	case "message":
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/internal/v1/rooms/"), "/members")
		room, ok := f.rooms[id]
		if !ok {
			return fmt.Errorf("no room %s", id)
		}
		members := room.Members
		room.Members = nil
		ans = map[string]any{"members": members, "room": room}
	case "presence":
		u, _ := url.Parse(path)
		var ps []map[string]string
		for _, id := range strings.Split(u.Query().Get("user_ids"), ",") {
			status := "offline"
			if f.online[id] {
				status = "online"
			}
			ps = append(ps, map[string]string{"user_id": id, "status": status})
		}
		ans = map[string]any{"presence": ps}
	default:
		id := path[strings.LastIndex(path, "/")+1:]
		ans = map[string]any{"user": api.User{ID: id, Username: id}}
	}
	b, _ := json.Marshal(ans)
	return json.Unmarshal(b, out)
}

func (f *sidecarFake) setRoom(r api.Room) {
	f.mu.Lock()
	f.rooms[r.ID] = r
	f.mu.Unlock()
}

// costFixture is notification replicas over one counted store, with the
// other services behind a counted fake sidecar and a push receiver.
type costFixture struct {
	t       *testing.T
	shared  *memstore.Store
	store   *countingStore
	sidecar *sidecarFake
	clock   *clock
	recv    *receiver

	// notices holds what the replicas announced on devices.changed.
	mu      sync.Mutex
	notices []events.DevicesChanged
}

func (f *costFixture) Publish(_ context.Context, n events.DevicesChanged) error {
	f.mu.Lock()
	f.notices = append(f.notices, n)
	f.mu.Unlock()
	return nil
}

// deliver hands the notices announced so far to a replica's index.
func (f *costFixture) deliver(to costReplica) {
	f.t.Helper()
	f.mu.Lock()
	ns := f.notices
	f.notices = nil
	f.mu.Unlock()
	for _, n := range ns {
		if err := to.index.Changed(context.Background(), n); err != nil {
			f.t.Fatal(err)
		}
	}
}

func newCostFixture(t *testing.T) *costFixture {
	t.Helper()
	shared := memstore.New()
	return &costFixture{
		t: t, shared: shared, store: &countingStore{Store: shared},
		sidecar: &sidecarFake{calls: map[string]int{}, rooms: map[string]api.Room{}, online: map[string]bool{}},
		clock:   &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		recv:    newReceiver(t),
	}
}

// costReplica is one replica: its engine, device registry and index.
type costReplica struct {
	engine *notify.Engine
	index  *device.Index
	reg    *device.Registry
}

func (f *costFixture) replica(fallback bool) costReplica {
	f.t.Helper()
	idx := device.NewIndex(f.store, device.IndexOptions{Fallback: fallback, Announcer: f})
	if err := idx.Load(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	reg := device.NewRegistry(f.store, idx)
	e := notify.New(notify.Deps{
		Store:       f.store,
		Rooms:       upstream.Rooms{Invoke: f.sidecar, AppID: "message"},
		Presence:    upstream.Presence{Invoke: f.sidecar, AppID: "presence", Path: "/internal/v1/presence"},
		Users:       upstream.NewUsers(f.sidecar, "auth", "/internal/v1/users", 1000, time.Hour),
		Devices:     reg,
		Modes:       mode.NewStore(f.store),
		Pusher:      push.NewSender(push.NewHTTPBinding(f.recv.srv.URL), push.Options{}),
		DeadLetters: &deadLetters{},
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, notify.Options{Window: window, Now: f.clock.Now, RoomTTL: 30 * time.Second})
	return costReplica{engine: e, index: idx, reg: reg}
}

func (f *costFixture) room(id string, lastSeq int64, members ...string) {
	f.sidecar.setRoom(api.Room{ID: id, Name: id, Kind: api.RoomPublic, LastSeq: lastSeq, Members: members})
}

func (f *costFixture) addDevice(reg *device.Registry, user string) string {
	f.t.Helper()
	u := "https://hooks.example/" + user
	d, _ := device.Registration{Platform: device.Webhook, URL: u}.Validate()
	if _, err := reg.Add(context.Background(), user, d); err != nil {
		f.t.Fatal(err)
	}
	return u
}

// cost runs work and returns what it cost.
func (f *costFixture) cost(work func()) ioCount {
	f.t.Helper()
	f.store.mu.Lock()
	f.store.n = ioCount{}
	f.store.mu.Unlock()
	f.sidecar.mu.Lock()
	clear(f.sidecar.calls)
	f.sidecar.mu.Unlock()
	work()
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	f.sidecar.mu.Lock()
	defer f.sidecar.mu.Unlock()
	n := f.store.n
	n.Invocations = map[string]int{}
	for k, v := range f.sidecar.calls {
		n.Invocations[k] = v
	}
	return n
}

func (f *costFixture) handle(e *notify.Engine, b events.RoomEventBatch) {
	f.t.Helper()
	if err := e.Handle(context.Background(), b); err != nil {
		f.t.Fatal(err)
	}
}

func members(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// messages returns n messages of sender in room from seq on, with their
// room ids (as a batch of several rooms carries them).
func messages(room string, seq int64, n int, sender string) []api.Event {
	evs := make([]api.Event, n)
	for i := range evs {
		evs[i] = api.Event{RoomID: room, Seq: seq + int64(i), Type: api.EventMessage, SenderID: sender, Text: "hi", ID: fmt.Sprint(room, seq+int64(i))}
	}
	return evs
}

// TestMessagesForMembersWithoutDevicesCostNothing: with the room cached,
// a batch into a room where no member has a device reads nothing and
// calls nobody. Before the index and the cache, each such batch cost one
// members call and one BulkGet of the members' devices.
func TestMessagesForMembersWithoutDevicesCostNothing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fallback  bool
		firstCost ioCount // the first batch of the room on this replica
	}{
		{"fallback off", false, ioCount{Invocations: map[string]int{"message": 1}}},
		{"fallback on", true, ioCount{BulkGets: 1, Invocations: map[string]int{"message": 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCostFixture(t)
			f.room("quiet", 10, members("user", 10)...)
			r := f.replica(tc.fallback)
			first := f.cost(func() {
				f.handle(r.engine, events.RoomEventBatch{RoomID: "quiet", Events: messages("quiet", 11, 3, "user0")})
			})
			if first.String() != tc.firstCost.String() {
				t.Fatalf("first batch cost %v, want %v", first, tc.firstCost)
			}
			for i := range 3 {
				n := f.cost(func() {
					f.handle(r.engine, events.RoomEventBatch{RoomID: "quiet", Events: messages("quiet", int64(14+3*i), 3, "user0")})
				})
				if n.reads() != 0 || n.Writes != 0 || n.Transacts != 0 || len(n.Invocations) != 0 {
					t.Fatalf("batch %d cost %v, want nothing", i+2, n)
				}
			}
		})
	}
}

// TestABatchOfSeveralRoomsIsDecidedInOneRound: one batch holding messages
// of five rooms (no batch room id) asks presence once and reads the modes
// once for all of them, and every room's offline member with a device
// gets that room's push; online members get none.
func TestABatchOfSeveralRoomsIsDecidedInOneRound(t *testing.T) {
	f := newCostFixture(t)
	r := f.replica(false)
	f.sidecar.online["on"] = true
	hooks := map[string]string{}
	var batch events.RoomEventBatch
	for i := range 5 {
		id, off := fmt.Sprint("room", i), fmt.Sprint("off", i)
		f.room(id, 3, append([]string{"sender", off, "on"}, members(id+"-quiet", 7)...)...)
		hooks[id] = f.addDevice(r.reg, off)
		batch.Events = append(batch.Events, messages(id, 4, 2, "sender")...)
	}
	f.addDevice(r.reg, "on")
	// Interleave the rooms, as a commit round of the message service may.
	batch.Events[1], batch.Events[2] = batch.Events[2], batch.Events[1]

	n := f.cost(func() { f.handle(r.engine, batch) })
	if got, want := n.Invocations, map[string]int{"message": 5, "presence": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("invocations %v, want %v (each room looked up once, presence once)", got, want)
	}
	// One BulkGet of the modes of every room, then per recipient and room
	// one BulkGet and one transaction counting both messages, and the
	// listing of the window for the sweep (a Get and a Write).
	if want := (ioCount{Gets: 5, BulkGets: 1 + 5, Writes: 5, Transacts: 5}); n.Gets != want.Gets || n.BulkGets != want.BulkGets || n.Writes != want.Writes || n.Transacts != want.Transacts {
		t.Errorf("store operations: %v, want %v", n, want)
	}
	t.Logf("a batch of 5 rooms (2 messages each, one offline and one online member with a device among 10): %v", n)

	// The same rooms again, within the TTL: cached.
	batch.Events = nil
	for i := range 5 {
		batch.Events = append(batch.Events, messages(fmt.Sprint("room", i), 6, 2, "sender")...)
	}
	n = f.cost(func() { f.handle(r.engine, batch) })
	if want := (ioCount{BulkGets: 1 + 5, Transacts: 5, Invocations: map[string]int{"presence": 1}}); n.String() != want.String() {
		t.Errorf("the cached rooms again cost %v, want %v", n, want)
	}
	t.Logf("the same rooms again, cached, windows open: %v", n)

	f.clock.advance(window + time.Second)
	r.engine.FlushDue(context.Background())
	for i := range 5 {
		id := fmt.Sprint("room", i)
		got := f.recv.to(hooks[id])
		if len(got) != 1 || got[0].Body["room_id"] != id || got[0].Body["count"] != 4.0 {
			t.Errorf("pushes for %s = %+v, want one counting 4", id, got)
		}
	}
	if got := f.recv.to("https://hooks.example/on"); len(got) != 0 {
		t.Errorf("the online member got %d pushes", len(got))
	}
}

// TestACountedMessageCostsOneCountPerRecipient shows what a batch costs
// when some members have a device, with the room cached: one read of the
// modes, one presence call, and per recipient one read and one
// transaction whatever the number of messages. Before: a members call, a
// BulkGet of every member's devices, the modes, presence, and per
// recipient and message one read and one transaction (here 2 + 8 reads
// and 6 transactions, 2 calls).
func TestACountedMessageCostsOneCountPerRecipient(t *testing.T) {
	f := newCostFixture(t)
	r := f.replica(false)
	f.room("busy", 10, members("u", 10)...)
	f.sidecar.online["u3"] = true
	for _, u := range []string{"u1", "u2", "u3"} {
		f.addDevice(r.reg, u)
	}
	f.handle(r.engine, events.RoomEventBatch{RoomID: "busy", Events: messages("busy", 11, 3, "u0")}) // looks the room up
	n := f.cost(func() {
		f.handle(r.engine, events.RoomEventBatch{RoomID: "busy", Events: messages("busy", 14, 3, "u0")})
	})
	want := ioCount{BulkGets: 1 + 2, Transacts: 2, Invocations: map[string]int{"presence": 1}}
	if n.String() != want.String() {
		t.Fatalf("cost %v, want %v", n, want)
	}
	t.Logf("3 messages into a cached room of 10 (2 offline and 1 online member with a device): %v", n)
}

// TestMembershipEventsUpdateTheCachedRoom: a member who joins is counted
// from their join on and one who leaves no longer, without a new lookup;
// an event older than what the cache applied changes nothing.
func TestMembershipEventsUpdateTheCachedRoom(t *testing.T) {
	f := newCostFixture(t)
	r := f.replica(false)
	f.room("general", 2, "alice", "bob")
	bob, dave := f.addDevice(r.reg, "bob"), f.addDevice(r.reg, "dave")
	f.handle(r.engine, events.RoomEventBatch{Events: messages("general", 3, 1, "alice")})

	joined := api.Event{RoomID: "general", Seq: 4, Type: api.EventMemberJoined, UserID: "dave"}
	left := api.Event{RoomID: "general", Seq: 5, Type: api.EventMemberLeft, UserID: "bob"}
	n := f.cost(func() {
		f.handle(r.engine, events.RoomEventBatch{Events: append([]api.Event{joined, left}, messages("general", 6, 1, "alice")...)})
		// A redelivery of the join, after the leave: nothing changes.
		f.handle(r.engine, events.RoomEventBatch{Events: []api.Event{{RoomID: "general", Seq: 1, Type: api.EventMemberJoined, UserID: "alice"}, joined}})
	})
	if n.Invocations["message"] != 0 {
		t.Fatalf("the room was looked up again: %v", n)
	}
	f.clock.advance(window + time.Second)
	r.engine.FlushDue(context.Background())
	if got := f.recv.to(bob); len(got) != 1 || got[0].Body["last_seq"] != 3.0 {
		t.Errorf("bob, who left at seq 5, got %+v, want the push of seq 3 only", got)
	}
	if got := f.recv.to(dave); len(got) != 1 || got[0].Body["first_seq"] != 6.0 {
		t.Errorf("dave, who joined at seq 4, got %+v, want a push from seq 6", got)
	}
}

// TestALookedUpRoomIsAskedAgainAfterItsTTL: another replica may have
// consumed the room's membership changes, so a cached room is looked up
// again once its TTL has passed, and one a late event contradicts at its
// next use.
func TestALookedUpRoomIsAskedAgainAfterItsTTL(t *testing.T) {
	f := newCostFixture(t)
	r := f.replica(false)
	f.room("general", 2, "alice", "bob")
	bob, dave := f.addDevice(r.reg, "bob"), f.addDevice(r.reg, "dave")
	f.handle(r.engine, events.RoomEventBatch{Events: messages("general", 3, 1, "alice")})
	// dave joins at seq 4; the event goes to another replica.
	f.room("general", 4, "alice", "bob", "dave")
	lookups := func(seq int64) int {
		return f.cost(func() { f.handle(r.engine, events.RoomEventBatch{Events: messages("general", seq, 1, "alice")}) }).Invocations["message"]
	}
	f.clock.advance(29 * time.Second)
	if n := lookups(5); n != 0 {
		t.Fatalf("looked up %d times within the TTL", n)
	}
	f.clock.advance(2 * time.Second)
	if n := lookups(6); n != 1 {
		t.Fatalf("looked up %d times after the TTL, want 1", n)
	}
	// A join this replica sees, older than the lookup yet not in it (the
	// lookup raced it, or it is an old redelivery): asked again.
	f.handle(r.engine, events.RoomEventBatch{Events: []api.Event{{RoomID: "general", Seq: 2, Type: api.EventMemberJoined, UserID: "erin"}}})
	if n := lookups(7); n != 1 {
		t.Fatalf("looked up %d times after a contradicting event, want 1", n)
	}
	f.clock.advance(window + time.Second)
	r.engine.FlushDue(context.Background())
	if got := f.recv.to(dave); len(got) != 1 || got[0].Body["first_seq"] != 6.0 || got[0].Body["count"] != 2.0 {
		t.Errorf("dave's pushes = %+v, want one from seq 6 (the first after the TTL) counting 2", got)
	}
	if got := f.recv.to(bob); len(got) != 1 || got[0].Body["count"] != 4.0 {
		t.Errorf("bob's pushes = %+v, want one counting 4", got)
	}
}

// TestADeviceRegisteredOnAnotherReplica: a member who registers a device
// on another replica is pushed by this one as soon as the notice arrives
// (or its next refresh of the index); until then this replica does not
// know the device, and the room's messages cost it nothing.
func TestADeviceRegisteredOnAnotherReplica(t *testing.T) {
	f := newCostFixture(t)
	a, b := f.replica(false), f.replica(false)
	f.room("general", 2, "alice", "bob")
	f.handle(a.engine, events.RoomEventBatch{Events: messages("general", 3, 1, "alice")})
	bobHook := f.addDevice(b.reg, "bob") // announced, not yet delivered to a

	if n := f.cost(func() { f.handle(a.engine, events.RoomEventBatch{Events: messages("general", 4, 1, "alice")}) }); n.reads() != 0 {
		t.Fatalf("before the notice: %v", n)
	}
	f.deliver(a)
	f.handle(a.engine, events.RoomEventBatch{Events: messages("general", 5, 1, "alice")})
	f.clock.advance(window + time.Second)
	a.engine.FlushDue(context.Background())
	if got := f.recv.to(bobHook); len(got) != 1 || got[0].Body["first_seq"] != 5.0 {
		t.Fatalf("bob's pushes = %+v, want one from seq 5", got)
	}
}
