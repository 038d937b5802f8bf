// Package throttle slows down password guessing: after a few free failed
// logins for a key (a username, a client address), each further failure
// blocks the key for twice as long as the one before, up to a cap.
//
// State is per replica and in memory: an attacker spread over N auth
// replicas gets at most N times the attempts, which the backoff still
// makes useless, and a restart forgives everyone.
package throttle

import (
	"sync"
	"time"
)

// Policy says how a key is throttled.
type Policy struct {
	// Free failures before blocking starts.
	Free int
	// Base is the first block; each further failure doubles it.
	Base time.Duration
	// Max caps a block.
	Max time.Duration
	// Forget drops a key's failures after this long without one.
	Forget time.Duration
}

type entry struct {
	failures     int
	lastFailure  time.Time
	blockedUntil time.Time
}

// Limiter tracks failures per key under one Policy.
type Limiter struct {
	policy Policy
	now    func() time.Time

	mu        sync.Mutex
	entries   map[string]*entry
	lastSweep time.Time
}

// New returns a Limiter on the clock now (time.Now when nil).
func New(p Policy, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{policy: p, now: now, entries: map[string]*entry{}}
}

// Blocked returns how long key must wait, or 0 when it may try now.
func (l *Limiter) Blocked(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.live(key)
	if e == nil {
		return 0
	}
	if d := e.blockedUntil.Sub(l.now()); d > 0 {
		return d
	}
	return 0
}

// Fail records a failed attempt for key and returns the block it now has
// (0 while it has free attempts left).
func (l *Limiter) Fail(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	e := l.live(key)
	if e == nil {
		e = &entry{}
		l.entries[key] = e
	}
	e.failures++
	e.lastFailure = now
	over := e.failures - l.policy.Free
	if over <= 0 {
		return 0
	}
	block := l.policy.Base
	for i := 1; i < over && block < l.policy.Max; i++ {
		block *= 2
	}
	block = min(block, l.policy.Max)
	e.blockedUntil = now.Add(block)
	return block
}

// Reset forgets key's failures (after a successful login).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, key)
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// live returns key's entry unless it is forgotten; the caller holds mu.
func (l *Limiter) live(key string) *entry {
	e, ok := l.entries[key]
	if !ok {
		return nil
	}
	if l.expired(e, l.now()) {
		delete(l.entries, key)
		return nil
	}
	return e
}

func (l *Limiter) expired(e *entry, now time.Time) bool {
	return now.Sub(e.lastFailure) >= l.policy.Forget && !now.Before(e.blockedUntil)
}

// sweep drops forgotten keys at most once a minute, so memory follows the
// attack rate rather than growing for ever; the caller holds mu.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for k, e := range l.entries {
		if l.expired(e, now) {
			delete(l.entries, k)
		}
	}
}
