package account

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/statestore/memstore"

	"github.com/papochat/papo/services/auth/internal/password"
)

func newAccounts(t *testing.T) *Accounts {
	t.Helper()
	h, err := password.NewHasher(password.Default, 2)
	if err != nil {
		t.Fatal(err)
	}
	return New(memstore.New(), h)
}

// TestUnknownUsersCostAsMuchAsWrongPasswords guards the timing side
// channel: without the dummy verification an unknown username answers
// in microseconds, a known one in tens of milliseconds.
func TestUnknownUsersCostAsMuchAsWrongPasswords(t *testing.T) {
	ctx := context.Background()
	a := newAccounts(t)
	if _, err := a.Register(ctx, "alice", "password1", ""); err != nil {
		t.Fatal(err)
	}
	measure := func(username string) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			_, err := a.Authenticate(ctx, username, "wrongpass")
			if apierror.CodeOf(err) != "invalid_credentials" {
				t.Fatalf("%s: %v", username, err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := measure("alice"), measure("nobody")
	if unknown < known/2 {
		t.Fatalf("unknown user took %v, known user with a wrong password %v", unknown, known)
	}
}

func TestConcurrentFirstUsesOfAnIdentityAgree(t *testing.T) {
	ctx := context.Background()
	a := newAccounts(t)
	id := authn.ExternalIdentity{Issuer: "https://sso.example", Subject: "s-1", Username: "maria"}
	const n = 6
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			u, err := a.ResolveIdentity(ctx, id)
			if err != nil {
				t.Error(err)
				return
			}
			ids <- u.ID
		})
	}
	wg.Wait()
	close(ids)
	first := ""
	for got := range ids {
		if first == "" {
			first = got
		}
		if got != first {
			t.Fatalf("one identity mapped to users %s and %s", first, got)
		}
	}
	// The losers' users are removed, so "maria" is free or the winner's.
	users, err := a.ByUsername(ctx, "maria")
	if err != nil || (len(users) == 1 && users[0].ID != first) {
		t.Fatalf("username maria: %+v %v, want none or the mapped user %s", users, err, first)
	}
}

func TestUsernameFromHint(t *testing.T) {
	for hint, want := range map[string]string{
		"Maria.Silva":       "maria.silva",
		"joao@corp.example": "joao.corp.example",
		"ab":                "",
		"名前":                "",
		"a-very-long-name-that-goes-on-and-on-and-on": "a-very-long-name-that-goes-on-an",
	} {
		if got := usernameFromHint(hint); got != want {
			t.Errorf("usernameFromHint(%q) = %q, want %q", hint, got, want)
		}
	}
}
