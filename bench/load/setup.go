package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/client"
)

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
