// Package session keeps login sessions and their refresh tokens in the
// auth state store.
//
// A refresh token is 256 random bits, shown to the client once and stored
// only as its SHA-256. Every refresh rotates it: the session remembers
// the hash of its newest token, and presenting any older token of the
// session (a stolen or replayed one) revokes the whole session. Keys:
// session/<sid> holds the session; refresh/<sha256 hex> points every
// token ever issued at its session, so an old token is recognised as
// reuse rather than as garbage.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
)

// Session is a login session as stored.
type Session struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Current is the SHA-256 (hex) of the newest refresh token.
	Current    string    `json:"current"`
	Generation int       `json:"generation"`
	Revoked    bool      `json:"revoked,omitempty"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	Reason     string    `json:"reason,omitempty"`
}

type tokenPointer struct {
	SessionID  string `json:"session_id"`
	Generation int    `json:"generation"`
}

// Publisher tells every service that a session is revoked.
type Publisher interface {
	PublishRevoked(ctx context.Context, ev events.SessionRevoked) error
}

// Manager creates, refreshes and revokes sessions.
type Manager struct {
	store statestore.Store
	pub   Publisher
	log   *slog.Logger
	// Lifetime is how long a session lasts from login, refreshes
	// included; AccessTTL is the lifetime of its access tokens, which
	// bounds how long a revocation notice matters.
	Lifetime  time.Duration
	AccessTTL time.Duration
	Now       func() time.Time
}

// New returns a Manager.
func New(store statestore.Store, pub Publisher, log *slog.Logger, lifetime, accessTTL time.Duration) *Manager {
	return &Manager{store: store, pub: pub, log: log, Lifetime: lifetime, AccessTTL: accessTTL, Now: time.Now}
}

func sessionKey(id string) string   { return "session/" + id }
func refreshKey(hash string) string { return "refresh/" + hash }

// Reasons a session is revoked.
const (
	ReasonLogout = "logout"
	ReasonReuse  = "refresh_token_reused"
)

// tokenLen is the length of a refresh token: base64url of 32 bytes.
const tokenLen = 43

func newToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, hashToken(token), nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create starts a session for userID and returns it with its first
// refresh token.
func (m *Manager) Create(ctx context.Context, userID string) (Session, string, error) {
	token, hash, err := newToken()
	if err != nil {
		return Session{}, "", err
	}
	now := m.Now().UTC()
	s := Session{ID: newID(), UserID: userID, CreatedAt: now, ExpiresAt: now.Add(m.Lifetime), Current: hash, Generation: 1}
	sb, _ := json.Marshal(s)
	pb, _ := json.Marshal(tokenPointer{SessionID: s.ID, Generation: 1})
	err = m.store.Transact(ctx, []statestore.Op{
		{Key: sessionKey(s.ID), Value: sb, IfAbsent: true, TTL: m.Lifetime},
		{Key: refreshKey(hash), Value: pb, IfAbsent: true, TTL: m.Lifetime},
	})
	if err != nil {
		return Session{}, "", fmt.Errorf("create session: %w", err)
	}
	return s, token, nil
}

func errInvalidRefresh() error {
	return apierror.New(apierror.Unauthenticated, "invalid_refresh_token", "refresh token is unknown or expired")
}

// Refresh rotates token: it returns the session and a new refresh token,
// and the old one stops working. An old token of the session revokes it.
func (m *Manager) Refresh(ctx context.Context, token string) (Session, string, error) {
	if len(token) != tokenLen {
		return Session{}, "", errInvalidRefresh()
	}
	hash := hashToken(token)
	it, err := m.store.Get(ctx, refreshKey(hash))
	if errors.Is(err, statestore.ErrNotFound) {
		return Session{}, "", errInvalidRefresh()
	}
	if err != nil {
		return Session{}, "", fmt.Errorf("look up refresh token: %w", err)
	}
	var ptr tokenPointer
	if err := json.Unmarshal(it.Value, &ptr); err != nil {
		return Session{}, "", fmt.Errorf("decode refresh token: %w", err)
	}
	var out Session
	var outToken string
	err = statestore.Retry(ctx, refreshAttempts, func() error {
		s, etag, err := m.get(ctx, ptr.SessionID)
		if errors.Is(err, statestore.ErrNotFound) {
			return errInvalidRefresh()
		}
		if err != nil {
			return err
		}
		now := m.Now()
		switch {
		case s.Revoked:
			return errRevoked()
		case !now.Before(s.ExpiresAt):
			return apierror.New(apierror.Unauthenticated, "session_expired", "the session has expired; log in again")
		case subtle.ConstantTimeCompare([]byte(s.Current), []byte(hash)) != 1:
			// An already-rotated token: someone holds a copy. Kill the
			// session, the newest token and its access tokens included.
			if err := m.Revoke(ctx, s.ID, ReasonReuse); err != nil {
				return err
			}
			m.log.Warn("refresh token reused; session revoked", "session_id", s.ID, "user_id", s.UserID,
				"token_generation", ptr.Generation, "current_generation", s.Generation)
			return apierror.New(apierror.Unauthenticated, "refresh_token_reused",
				"this refresh token was already used; the session is revoked")
		}
		next, nextHash, err := newToken()
		if err != nil {
			return err
		}
		s.Current = nextHash
		s.Generation++
		ttl := s.ExpiresAt.Sub(now)
		sb, _ := json.Marshal(s)
		pb, _ := json.Marshal(tokenPointer{SessionID: s.ID, Generation: s.Generation})
		err = m.store.Transact(ctx, []statestore.Op{
			{Key: sessionKey(s.ID), Value: sb, ETag: etag, TTL: ttl},
			{Key: refreshKey(nextHash), Value: pb, IfAbsent: true, TTL: ttl},
		})
		if err != nil {
			// A conflict: a concurrent refresh or revocation changed
			// the session: read it again. If that refresh used this
			// same token, this one is now a reuse.
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		out, outToken = s, next
		return nil
	})
	if errors.Is(err, statestore.ErrConflict) {
		return Session{}, "", apierror.New(apierror.Unavailable, "busy", "the session is changing too fast; retry")
	}
	if err != nil {
		return Session{}, "", err
	}
	return out, outToken, nil
}

func errRevoked() error {
	return apierror.New(apierror.Unauthenticated, "session_revoked", "the session was revoked; log in again")
}

func (m *Manager) get(ctx context.Context, id string) (Session, string, error) {
	it, err := m.store.Get(ctx, sessionKey(id))
	if err != nil {
		return Session{}, "", err
	}
	var s Session
	if err := json.Unmarshal(it.Value, &s); err != nil {
		return Session{}, "", fmt.Errorf("decode session %s: %w", id, err)
	}
	return s, it.ETag, nil
}

// Bounds of the re-reads after a conflicting writer (statestore.Retry).
const (
	refreshAttempts = 8
	revokeAttempts  = 9
)

// Revoke ends session id and announces it on events.TopicSessions, so
// every service refuses its access tokens at once. Revoking a revoked
// session announces it again (a retried logout after a failed publish
// still reaches everyone). An unknown session is not an error.
func (m *Manager) Revoke(ctx context.Context, id, reason string) error {
	var s Session
	found := false
	err := statestore.Retry(ctx, revokeAttempts, func() error {
		found = false
		cur, etag, err := m.get(ctx, id)
		if errors.Is(err, statestore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		s, found = cur, true
		if s.Revoked {
			return nil
		}
		now := m.Now()
		s.Revoked, s.RevokedAt, s.Reason = true, now.UTC(), reason
		ttl := max(s.ExpiresAt.Sub(now), time.Second)
		b, _ := json.Marshal(s)
		if err := m.store.Write(ctx, statestore.Op{Key: sessionKey(id), Value: b, ETag: etag, TTL: ttl}); err != nil {
			return fmt.Errorf("revoke session %s: %w", id, err)
		}
		return nil
	})
	if err != nil || !found {
		return err
	}
	ev := events.SessionRevoked{
		SessionID: s.ID,
		UserID:    s.UserID,
		RevokedAt: s.RevokedAt,
		// Access tokens issued before the revocation live at most
		// AccessTTL; a minute more covers verifiers' clock leeway.
		Until: s.RevokedAt.Add(m.AccessTTL + time.Minute),
	}
	// Remembered first: the services that start later read it, and it
	// stands even when the notice cannot be published.
	if err := m.remember(ctx, ev); err != nil {
		return err
	}
	if err := m.pub.PublishRevoked(ctx, ev); err != nil {
		return fmt.Errorf("announce revocation of session %s: %w", id, err)
	}
	return nil
}

// Live returns the session when it is active; a revoked one is an
// Unauthenticated error (session_revoked), a missing or expired one a
// NotFound (not_found).
func (m *Manager) Live(ctx context.Context, id string) (Session, error) {
	s, _, err := m.get(ctx, id)
	if errors.Is(err, statestore.ErrNotFound) {
		return Session{}, apierror.New(apierror.NotFound, "not_found", "no such session")
	}
	if err != nil {
		return Session{}, err
	}
	if s.Revoked {
		return Session{}, errRevoked()
	}
	if !m.Now().Before(s.ExpiresAt) {
		return Session{}, apierror.New(apierror.NotFound, "not_found", "no such session")
	}
	return s, nil
}
