package session

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/statestore"
	"github.com/papochat/papo/platform/statestore/memstore"
)

type recorder struct {
	mu  sync.Mutex
	evs []events.SessionRevoked
}

func (r *recorder) PublishRevoked(_ context.Context, ev events.SessionRevoked) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

// interleaving runs before() once, just before the first transaction
// reaches the store: a second request that read the same state and
// commits first.
type interleaving struct {
	statestore.Store
	once   sync.Once
	before func()
}

func (s *interleaving) Transact(ctx context.Context, ops []statestore.Op) error {
	s.once.Do(s.before)
	return s.Store.Transact(ctx, ops)
}

func newManager(store statestore.Store) (*Manager, *recorder) {
	pub := &recorder{}
	return New(store, pub, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour, 15*time.Minute), pub
}

func TestRacingRefreshesOfOneTokenCannotBothWin(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	m, _ := newManager(mem)
	s, tok, err := m.Create(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	store := &interleaving{Store: mem}
	racer, pub := newManager(store)
	var otherErr error
	var otherTok string
	store.before = func() { _, otherTok, otherErr = m.Refresh(ctx, tok) }
	_, _, err = racer.Refresh(ctx, tok)

	if otherErr != nil {
		t.Fatalf("the first refresh failed: %v", otherErr)
	}
	if apierror.CodeOf(err) != "refresh_token_reused" {
		t.Fatalf("the second refresh of one token: got %v, want refresh_token_reused", err)
	}
	if _, _, err := m.Refresh(ctx, otherTok); apierror.CodeOf(err) != "session_revoked" {
		t.Fatalf("the first refresh's token after the reuse: got %v, want session_revoked", err)
	}
	if len(pub.evs) != 1 || pub.evs[0].SessionID != s.ID {
		t.Fatalf("published %+v", pub.evs)
	}
}

func TestRevokeAnnouncesEvenWhenAlreadyRevoked(t *testing.T) {
	ctx := context.Background()
	m, pub := newManager(memstore.New())
	s, _, _ := m.Create(ctx, "u1")
	for range 2 {
		if err := m.Revoke(ctx, s.ID, ReasonLogout); err != nil {
			t.Fatal(err)
		}
	}
	if len(pub.evs) != 2 {
		t.Fatalf("got %d notices, want 2 (a retried logout re-announces)", len(pub.evs))
	}
	if _, err := m.Live(ctx, s.ID); apierror.CodeOf(err) != "session_revoked" {
		t.Fatalf("Live after revoke: %v", err)
	}
	if err := m.Revoke(ctx, "unknown", ReasonLogout); err != nil {
		t.Fatalf("revoking an unknown session: %v", err)
	}
}

func TestSessionsExpireAfterTheirLifetime(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(memstore.New())
	now := time.Now()
	m.Now = func() time.Time { return now }
	s, tok, _ := m.Create(ctx, "u1")
	now = now.Add(2 * time.Hour)
	if _, _, err := m.Refresh(ctx, tok); apierror.KindOf(err) != apierror.Unauthenticated {
		t.Fatalf("refresh of an expired session: %v", err)
	}
	if _, err := m.Live(ctx, s.ID); apierror.KindOf(err) != apierror.NotFound {
		t.Fatalf("Live of an expired session: %v", err)
	}
}

func TestRefreshTokensAreStoredOnlyAsHashes(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	m, _ := newManager(mem)
	s, tok, _ := m.Create(ctx, "u1")
	if _, err := mem.Get(ctx, refreshKey(tok)); err == nil {
		t.Fatal("the raw token is a store key")
	}
	it, err := mem.Get(ctx, sessionKey(s.ID))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(it.Value), tok) {
		t.Fatalf("the session record holds the raw token: %s", it.Value)
	}
	if _, err := mem.Get(ctx, refreshKey(hashToken(tok))); err != nil {
		t.Fatalf("the token's hash is not stored: %v", err)
	}
}

// TestRecentRevocationsKeepThoseStillInForce: every revocation is listed
// for services that start later, once per session, until its access
// tokens have expired.
func TestRecentRevocationsKeepThoseStillInForce(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m, _ := newManager(memstore.NewWithClock(func() time.Time { return now }))
	m.Now = func() time.Time { return now }
	s1, _, _ := m.Create(ctx, "u1")
	s2, _, _ := m.Create(ctx, "u2")
	for _, id := range []string{s1.ID, s1.ID} { // a retried logout is listed once
		if err := m.Revoke(ctx, id, ReasonLogout); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := m.Recent(ctx); err != nil || len(got) != 1 || got[0].SessionID != s1.ID {
		t.Fatalf("recent = %+v, %v; want s1 once", got, err)
	}
	now = now.Add(m.AccessTTL + 2*time.Minute) // s1's tokens are all expired
	if err := m.Revoke(ctx, s2.ID, ReasonLogout); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Recent(ctx); err != nil || len(got) != 1 || got[0].SessionID != s2.ID {
		t.Fatalf("recent = %+v, %v; want s2 alone", got, err)
	}
}
