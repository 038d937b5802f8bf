// Package load is papo's fan-out load generator: N WebSocket clients in R
// rooms, one sender per room on a fixed schedule, every member receiving.
// It follows docs/protocol.md through the public gateway only, as any
// client would, and counts what came back: published, acked, refused,
// delivered, lost and duplicated, with the latency of every delivery
// measured from the moment its send was scheduled (so a sender that falls
// behind is not hidden). cmd/papoload runs it from the command line; the
// benchmarks of package bench run that command against a fresh stack.
package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

// Config describes one run.
type Config struct {
	// URL is the gateway's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// Clients is the number of WebSocket clients, one user each; Rooms the
	// number of rooms they are spread over (Clients/Rooms members each).
	Clients, Rooms int
	// Rate is the total number of messages per second over all rooms; each
	// room's creator sends Rate/Rooms per second.
	Rate float64
	// Warmup runs the schedule without counting it; Duration is the
	// measured part; Drain is how long to wait for the last deliveries.
	Warmup, Duration, Drain time.Duration
	// TextBytes pads each message's text to about this size.
	TextBytes int
	// SetupConcurrency bounds registrations, joins and dials in flight.
	SetupConcurrency int
	// Idle only opens the connections and holds them for Duration
	// (memory per idle connection); nothing is sent.
	Idle bool
	// ConnsPerUser opens this many sockets per user in Idle mode (the
	// server's per-user cap must allow it); default 1.
	ConnsPerUser int
	// Progress receives one-line progress messages and the phase markers
	// ("load: measure start", "load: measure end") a harness waits for.
	Progress io.Writer
}

func (c *Config) defaults() error {
	if c.URL == "" {
		return errors.New("no gateway URL")
	}
	if c.Clients < 1 || c.Rooms < 1 || c.Rooms > c.Clients {
		return fmt.Errorf("need 1 <= rooms (%d) <= clients (%d)", c.Rooms, c.Clients)
	}
	if !c.Idle && c.Rate <= 0 {
		return errors.New("rate must be positive")
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 15 * time.Second
	}
	if c.TextBytes <= 0 {
		c.TextBytes = 64
	}
	if c.SetupConcurrency <= 0 {
		c.SetupConcurrency = 16
	}
	if c.ConnsPerUser <= 0 {
		c.ConnsPerUser = 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// Report is what a run measured. Latencies are in milliseconds.
type Report struct {
	Clients   int     `json:"clients"`
	Rooms     int     `json:"rooms"`
	Rate      float64 `json:"rate"`
	Seconds   float64 `json:"seconds"`
	Published int     `json:"published"` // sends scheduled in the measured window and written
	Acked     int     `json:"acked"`
	Refused   int     `json:"refused"` // error frames answering a send
	// RefusedBy counts refusals by error code.
	RefusedBy map[string]int `json:"refused_by,omitempty"`
	// Expected is the number of deliveries the acked messages owe (every
	// member of the room, the sender included); Delivered those that came,
	// Lost those that did not, Duplicated those that came twice.
	Expected   int `json:"expected"`
	Delivered  int `json:"delivered"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	// OutOfOrder counts events whose seq was not above the previous one
	// the same socket had of that room.
	OutOfOrder int     `json:"out_of_order"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	AckP50     float64 `json:"ack_p50_ms"`
	AckP99     float64 `json:"ack_p99_ms"`
	// Disconnects counts sockets that closed during the run.
	Disconnects int `json:"disconnects"`
	// Connections is the number of sockets open when the measured window
	// started (Idle mode: held open).
	Connections int `json:"connections"`
}

// Run performs one run: set-up (accounts, rooms, sockets), the schedule,
// and the count.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	progress := func(format string, args ...any) { fmt.Fprintf(cfg.Progress, "load: "+format+"\n", args...) }
	run := &runState{cfg: cfg, tag: randomTag()}

	start := time.Now()
	users, err := run.register(ctx)
	if err != nil {
		return Report{}, err
	}
	progress("%d users registered and logged in in %s", len(users), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := run.makeRooms(ctx, users); err != nil {
		return Report{}, err
	}
	progress("%d rooms made in %s", len(run.rooms), time.Since(start).Round(time.Millisecond))
	run.allocate()
	start = time.Now()
	if err := run.dial(ctx, users); err != nil {
		run.closeAll()
		return Report{}, err
	}
	defer run.closeAll()
	progress("%d sockets open in %s", len(run.socks), time.Since(start).Round(time.Millisecond))
	if !cfg.Idle {
		// Every socket tells its room peers that it came online; the
		// schedule starts once those presence frames have stopped, so the
		// measured window is not the tail of the connection storm.
		start = time.Now()
		quiet := run.settle(ctx, 2*time.Second, time.Minute)
		progress("presence settled in %s (quiet: %v)", time.Since(start).Round(time.Millisecond), quiet)
	}

	if cfg.Idle {
		progress("measure start")
		select {
		case <-ctx.Done():
			return Report{}, ctx.Err()
		case <-time.After(cfg.Duration):
		}
		progress("measure end")
		return Report{Clients: cfg.Clients, Connections: run.open(), Seconds: cfg.Duration.Seconds(),
			Disconnects: int(run.disconnects.Load())}, nil
	}
	return run.load(ctx, progress)
}

type runState struct {
	cfg   Config
	tag   string
	rooms []*room
	socks []*sock

	// measureFrom and measureTo bound the scheduled times counted (unix
	// ns; readers run before they are set).
	measureFrom, measureTo atomic.Int64
	// closing is set when the run closes its sockets itself; a socket that
	// ends before that is a disconnect.
	closing     atomic.Bool
	disconnects atomic.Int64
	// lastSignal is when the latest presence frame arrived (unix ns).
	lastSignal atomic.Int64
	readers    sync.WaitGroup
	// perRoom is each room's number of scheduled messages.
	perRoom int
}

// allocate sizes the per-message records before any socket reads.
func (r *runState) allocate() {
	if r.cfg.Idle {
		return
	}
	perRoom := r.cfg.Rate / float64(len(r.rooms))
	r.perRoom = int(math.Ceil((r.cfg.Warmup+r.cfg.Duration).Seconds()*perRoom)) + 1
	for _, rm := range r.rooms {
		rm.sent = make([]atomic.Int64, r.perRoom)
		rm.acked = make([]atomic.Bool, r.perRoom)
		rm.seqOf = make([]atomic.Int64, r.perRoom)
	}
}

// settle waits until no presence frame has arrived for quiet, at most max;
// it reports whether it got quiet.
func (r *runState) settle(ctx context.Context, quiet, max time.Duration) bool {
	deadline := time.Now().Add(max)
	r.lastSignal.CompareAndSwap(0, time.Now().UnixNano())
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Since(time.Unix(0, r.lastSignal.Load())) >= quiet {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

type member struct {
	user *client.Client
	id   string
}

// room is one room of the run: its members, and the schedule of its sender.
type room struct {
	id      string
	index   int
	members []*member
	// sent[k] is when message k was scheduled (unix ns), 0 if not sent;
	// acked[k] is set once its ack came.
	sent   []atomic.Int64
	acked  []atomic.Bool
	seqOf  []atomic.Int64
	sender *sock
}

// sock is one client socket. Its reader records what arrives.
type sock struct {
	ws   *socket
	room *room
	// got[k] counts deliveries of message k of the socket's room.
	got     []uint8
	lastSeq int64
	lat     []time.Duration
	ackLat  []time.Duration
	refused map[string]int
	outOf   int
	mu      sync.Mutex
	done    chan struct{}
	closed  atomic.Bool
}

func randomTag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// parallel runs f(0..n-1) with at most limit in flight and returns the
// first error.
func parallel(ctx context.Context, n, limit int, f func(i int) error) error {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// retry calls f until it succeeds or fails with a client error (4xx),
// up to 20 times: a fresh stack answers 5xx for a moment, and a loaded
// one sheds with 429/503.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range 20 {
		if err = f(); err == nil {
			return nil
		}
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status < 500 && ce.Status != http.StatusTooManyRequests {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return err
}

func (r *runState) register(ctx context.Context) ([]*member, error) {
	users := make([]*member, r.cfg.Clients)
	err := parallel(ctx, len(users), r.cfg.SetupConcurrency, func(i int) error {
		c := client.New(r.cfg.URL)
		name := fmt.Sprintf("ld%s%d", r.tag, i)
		pw := "load test password " + name
		err := retry(ctx, func() error {
			_, err := c.Register(ctx, name, pw, name)
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status == http.StatusConflict {
				return nil // an earlier attempt got through
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		var tok api.TokenResponse
		if err := retry(ctx, func() (err error) { tok, err = c.Login(ctx, name, pw); return err }); err != nil {
			return fmt.Errorf("log in %s: %w", name, err)
		}
		users[i] = &member{user: c, id: tok.User.ID}
		return nil
	})
	return users, err
}

// makeRooms gives every room its creator (the first of its members, who
// sends) and lets the others join.
func (r *runState) makeRooms(ctx context.Context, users []*member) error {
	r.rooms = make([]*room, r.cfg.Rooms)
	for i := range r.rooms {
		r.rooms[i] = &room{index: i}
	}
	for i, u := range users {
		rm := r.rooms[i%len(r.rooms)]
		rm.members = append(rm.members, u)
	}
	err := parallel(ctx, len(r.rooms), r.cfg.SetupConcurrency, func(i int) error {
		rm := r.rooms[i]
		return retry(ctx, func() error {
			created, err := rm.members[0].user.CreateRoom(ctx, fmt.Sprintf("load %s %d", r.tag, i), api.RoomPublic)
			rm.id = created.ID
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("create rooms: %w", err)
	}
	type join struct {
		rm *room
		u  *member
	}
	var joins []join
	for _, rm := range r.rooms {
		for _, u := range rm.members[1:] {
			joins = append(joins, join{rm, u})
		}
	}
	err = parallel(ctx, len(joins), r.cfg.SetupConcurrency, func(i int) error {
		j := joins[i]
		return retry(ctx, func() error { _, err := j.u.user.JoinRoom(ctx, j.rm.id); return err })
	})
	if err != nil {
		return fmt.Errorf("join rooms: %w", err)
	}
	return nil
}

// resumeNothing starts live delivery at once (docs/protocol.md: live
// events start at the client's first frame).
var resumeNothing = []byte(`{"type":"resume","rooms":{}}`)

func (r *runState) dial(ctx context.Context, users []*member) error {
	type target struct {
		rm *room
		u  *member
	}
	var targets []target
	for _, rm := range r.rooms {
		for _, u := range rm.members {
			for range r.cfg.ConnsPerUser {
				targets = append(targets, target{rm, u})
			}
		}
	}
	socks := make([]*sock, len(targets))
	err := parallel(ctx, len(targets), max(r.cfg.SetupConcurrency, 32), func(i int) error {
		t := targets[i]
		var ws *socket
		err := retry(ctx, func() (err error) {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ws, err = dialSocket(dctx, r.cfg.URL, t.u.user.Token)
			return err
		})
		if err != nil {
			return fmt.Errorf("dial as %s: %w", t.u.id, err)
		}
		if err := ws.write(resumeNothing); err != nil {
			ws.close()
			return err
		}
		s := &sock{ws: ws, room: t.rm, refused: map[string]int{}, done: make(chan struct{}), got: make([]uint8, r.perRoom)}
		socks[i] = s
		// Idle sockets are read too: reading answers the server's pings.
		r.readers.Add(1)
		go func() { defer r.readers.Done(); r.read(s) }()
		return nil
	})
	for _, s := range socks {
		if s != nil {
			r.socks = append(r.socks, s)
		}
	}
	if err != nil {
		return err
	}
	for _, rm := range r.rooms {
		for _, s := range r.socks {
			if s.room == rm && s.ws.userID == rm.members[0].id {
				rm.sender = s
				break
			}
		}
	}
	return nil
}

func (r *runState) open() int {
	n := 0
	for _, s := range r.socks {
		if !s.closed.Load() {
			n++
		}
	}
	return n
}

func (r *runState) closeAll() {
	r.closing.Store(true)
	for _, s := range r.socks {
		s.ws.close()
	}
}

// textPrefix starts every message's text: "<k> <scheduled unix ns> ".
func messageText(k int, at int64, pad int) string {
	s := strconv.Itoa(k) + " " + strconv.FormatInt(at, 10) + " "
	if n := pad - len(s); n > 0 {
		s += strings.Repeat("x", n)
	}
	return s
}

func (r *runState) load(ctx context.Context, progress func(string, ...any)) (Report, error) {
	cfg := r.cfg
	perRoom := cfg.Rate / float64(len(r.rooms))
	total := cfg.Warmup + cfg.Duration
	n := r.perRoom

	t0 := time.Now().Add(500 * time.Millisecond)
	from := t0.Add(cfg.Warmup)
	to := from.Add(cfg.Duration)
	r.measureFrom.Store(from.UnixNano())
	r.measureTo.Store(to.UnixNano())
	interval := time.Duration(float64(time.Second) / perRoom)
	var senders sync.WaitGroup
	sendErrs := make(chan error, len(r.rooms))
	for _, rm := range r.rooms {
		senders.Add(1)
		go func() {
			defer senders.Done()
			// Rooms are spread over the interval so the load is smooth.
			offset := time.Duration(float64(interval) * float64(rm.index) / float64(len(r.rooms)))
			for k := range n {
				at := t0.Add(offset + time.Duration(k)*interval)
				if at.After(t0.Add(total)) {
					return
				}
				if d := time.Until(at); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				text := messageText(k, at.UnixNano(), cfg.TextBytes)
				frame := `{"type":"send","room_id":"` + rm.id + `","client_id":"` + r.tag + "-" + strconv.Itoa(k) + `","text":"` + text + `"}`
				rm.sent[k].Store(at.UnixNano())
				if err := rm.sender.ws.write([]byte(frame)); err != nil {
					rm.sent[k].Store(0)
					sendErrs <- fmt.Errorf("room %d send %d: %w", rm.index, k, err)
					return
				}
			}
		}()
	}
	go func() {
		select {
		case <-time.After(time.Until(from)):
			progress("measure start")
		case <-ctx.Done():
		}
		select {
		case <-time.After(time.Until(to)):
			progress("measure end")
		case <-ctx.Done():
		}
	}()
	senders.Wait()
	// Wait until every counted message is acked and delivered everywhere,
	// or the drain time is up.
	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.complete() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.closeAll()
	r.readers.Wait()
	close(sendErrs)
	rep := r.report()
	var errs []error
	for err := range sendErrs {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// counted reports whether message k of rm falls in the measured window.
func (r *runState) counted(rm *room, k int) bool {
	at := rm.sent[k].Load()
	return at != 0 && at >= r.measureFrom.Load() && at < r.measureTo.Load()
}

// complete reports whether every counted message was acked or refused and
// delivered to every socket of its room.
func (r *runState) complete() bool {
	for _, s := range r.socks {
		s.mu.Lock()
		for k := range s.got {
			if r.counted(s.room, k) && s.room.acked[k].Load() && s.got[k] == 0 {
				s.mu.Unlock()
				return false
			}
		}
		s.mu.Unlock()
	}
	for _, rm := range r.rooms {
		for k := range rm.sent {
			if r.counted(rm, k) && !rm.acked[k].Load() && rm.seqOf[k].Load() == 0 {
				return false
			}
		}
	}
	return true
}

// read records every frame the socket gets until it closes.
func (r *runState) read(s *sock) {
	defer close(s.done)
	defer func() {
		s.closed.Store(true)
		if !r.closing.Load() {
			r.disconnects.Add(1)
		}
	}()
	var f frame
	for {
		data, err := s.ws.read()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		f = frame{}
		if err := f.decode(data); err != nil {
			continue
		}
		rm := s.room
		switch f.Type {
		case api.FrameEvent:
			if f.Event.Type != api.EventMessage || f.Event.RoomID != rm.id {
				continue
			}
			k, at, ok := parseText(f.Event.Text)
			if !ok || k >= len(s.got) {
				continue
			}
			s.mu.Lock()
			if f.Event.Seq <= s.lastSeq {
				s.outOf++
			}
			s.lastSeq = max(s.lastSeq, f.Event.Seq)
			if s.got[k] < 255 {
				s.got[k]++
			}
			if s.got[k] == 1 && at >= r.measureFrom.Load() && at < r.measureTo.Load() {
				s.lat = append(s.lat, time.Duration(now-at))
			}
			s.mu.Unlock()
		case api.FrameAck:
			k, ok := r.clientIndex(f.ClientID)
			if !ok || k >= len(rm.acked) || rm.sender != s {
				continue
			}
			if !rm.acked[k].Swap(true) {
				rm.seqOf[k].Store(f.Seq)
				if at := rm.sent[k].Load(); r.counted(rm, k) {
					s.mu.Lock()
					s.ackLat = append(s.ackLat, time.Duration(now-at))
					s.mu.Unlock()
				}
			}
		case api.FramePresence:
			r.lastSignal.Store(now)
		case api.FrameError:
			k, ok := r.clientIndex(f.Ref)
			s.mu.Lock()
			s.refused[f.Code]++
			s.mu.Unlock()
			if ok && k < len(rm.seqOf) {
				rm.seqOf[k].Store(-1) // settled: refused
			}
		}
	}
}

func (r *runState) clientIndex(clientID string) (int, bool) {
	rest, ok := strings.CutPrefix(clientID, r.tag+"-")
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(rest)
	return k, err == nil && k >= 0
}

func parseText(text string) (k int, at int64, ok bool) {
	a, rest, ok1 := strings.Cut(text, " ")
	b, _, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	k, err1 := strconv.Atoi(a)
	at, err2 := strconv.ParseInt(b, 10, 64)
	return k, at, err1 == nil && err2 == nil
}

func (r *runState) report() Report {
	rep := Report{Clients: r.cfg.Clients, Rooms: len(r.rooms), Rate: r.cfg.Rate, Seconds: r.cfg.Duration.Seconds(),
		RefusedBy: map[string]int{}, Connections: len(r.socks)}
	var lat, ackLat []time.Duration
	for _, rm := range r.rooms {
		for k := range rm.sent {
			if !r.counted(rm, k) {
				continue
			}
			rep.Published++
			if rm.acked[k].Load() {
				rep.Acked++
			}
		}
	}
	for _, s := range r.socks {
		s.mu.Lock()
		for k, n := range s.got {
			if !r.counted(s.room, k) || !s.room.acked[k].Load() {
				continue
			}
			rep.Expected++
			if n == 0 {
				rep.Lost++
				continue
			}
			rep.Delivered++
			rep.Duplicated += int(n) - 1
		}
		for code, n := range s.refused {
			rep.RefusedBy[code] += n
			rep.Refused += n
		}
		rep.OutOfOrder += s.outOf
		lat = append(lat, s.lat...)
		ackLat = append(ackLat, s.ackLat...)
		s.mu.Unlock()
	}
	rep.Disconnects = int(r.disconnects.Load())
	slices.Sort(lat)
	slices.Sort(ackLat)
	rep.P50, rep.P90, rep.P99 = msAt(lat, 0.50), msAt(lat, 0.90), msAt(lat, 0.99)
	if len(lat) > 0 {
		rep.Max = ms(lat[len(lat)-1])
	}
	rep.AckP50, rep.AckP99 = msAt(ackLat, 0.50), msAt(ackLat, 0.99)
	return rep
}

func msAt(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return ms(sorted[max(0, min(i, len(sorted)-1))])
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
