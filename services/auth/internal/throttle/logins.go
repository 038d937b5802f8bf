package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/papochat/papo/platform/statestore"
)

// LoginPolicy is the login rule (docs/auth.md, "Abuse limits"): three
// counters of failed logins, keyed so that nobody can lock a user out by
// failing logins in that user's name.
type LoginPolicy struct {
	// Pair throttles one username at one client address: the guesser's
	// own attempts. It blocks hard (up to its Max) but only that pair.
	Pair Policy
	// Address throttles one client address, whatever usernames it tries
	// (spraying one password over many accounts).
	Address Policy
	// User throttles one username from every address (a guesser spread
	// over many addresses). Its Free is much higher and its Max short: it
	// only slows, and never applies at an address that logged in to the
	// account before (Known), so the account's owner is not locked out.
	User Policy
}

// Known remembers the client addresses each username logged in from.
type Known interface {
	// Known reports whether username logged in successfully from addr
	// recently.
	Known(ctx context.Context, username, addr string) (bool, error)
	// Remember records a successful login of username from addr.
	Remember(ctx context.Context, username, addr string) error
}

// Logins applies a LoginPolicy.
type Logins struct {
	pair, addr, user *Limiter
	known            Known
}

// NewLogins returns the login throttle over known, on the clock now.
func NewLogins(p LoginPolicy, known Known, now func() time.Time) *Logins {
	return &Logins{pair: New(p.Pair, now), addr: New(p.Address, now), user: New(p.User, now), known: known}
}

func pairKey(username, addr string) string { return username + "\x00" + addr }

// Check returns how long a login of username from addr must wait (0: it
// may try now). The username-wide slow-down is skipped for an address
// the username logged in from before; when that cannot be looked up, it
// applies (it only slows).
func (l *Logins) Check(ctx context.Context, username, addr string) time.Duration {
	if wait := max(l.pair.Blocked(pairKey(username, addr)), l.addr.Blocked(addr)); wait > 0 {
		return wait
	}
	wait := l.user.Blocked(username)
	if wait == 0 {
		return 0
	}
	if known, err := l.known.Known(ctx, username, addr); err == nil && known {
		return 0
	}
	return wait
}

// Failed records a wrong password (or an unknown username) from addr.
func (l *Logins) Failed(username, addr string) {
	l.pair.Fail(pairKey(username, addr))
	l.addr.Fail(addr)
	l.user.Fail(username)
}

// Succeeded forgets the pair's failures and remembers addr as one the
// username logs in from. The address and username counters are kept: a
// success does not excuse an address's failures on other accounts, nor
// a spread guesser's on this one.
func (l *Logins) Succeeded(ctx context.Context, username, addr string) error {
	l.pair.Reset(pairKey(username, addr))
	return l.known.Remember(ctx, username, addr)
}

// StoreKnown is Known in a state store: one key per (username, address)
// that logged in, `loginaddr/<sha256(username, address)>` (hashed: the
// store need not hold users' addresses), expiring TTL after the last
// login from it.
type StoreKnown struct {
	Store statestore.Store
	TTL   time.Duration
}

func knownKey(username, addr string) string {
	sum := sha256.Sum256([]byte(username + "\x00" + addr))
	return "loginaddr/" + hex.EncodeToString(sum[:])
}

// Known implements Known.
func (k StoreKnown) Known(ctx context.Context, username, addr string) (bool, error) {
	_, err := k.Store.Get(ctx, knownKey(username, addr))
	if errors.Is(err, statestore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("known login address: %w", err)
	}
	return true, nil
}

// Remember implements Known.
func (k StoreKnown) Remember(ctx context.Context, username, addr string) error {
	if err := k.Store.Write(ctx, statestore.Op{Key: knownKey(username, addr), Value: []byte("{}"), TTL: k.TTL}); err != nil {
		return fmt.Errorf("remember login address: %w", err)
	}
	return nil
}
