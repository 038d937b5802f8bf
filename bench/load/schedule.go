package load

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/papochat/papo/api"
)

// messageText is message k's text: "<k> <scheduled unix ns> " padded to pad bytes.
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
