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
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

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
