// Package account keeps papo's users in the auth state store: usernames
// (unique under concurrency), password hashes, and users mapped from
// external OIDC identities.
//
// Keys: user/<id> holds the record; username/<name> and
// identity/<sha256(issuer, subject)> point at a user id and are written
// insert-if-absent, which is what makes them unique without a
// read-then-write race.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/papochat/papo/api"
	"github.com/papochat/papo/api/validate"
	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/authn"
	"github.com/papochat/papo/platform/statestore"

	"github.com/papochat/papo/services/auth/internal/password"
)

// Limits on account fields (the rules are the contract's, api/validate).
const (
	MinPassword    = validate.MinPassword
	MaxPassword    = validate.MaxPassword // bytes; argon2 hashes any length, but bodies stay small
	MaxDisplayName = validate.MaxDisplayName
)

func validUsername(name string) bool { return validate.Username(name) == nil }

// record is a user as stored.
type record struct {
	ID           string    `json:"id"`
	Username     string    `json:"username"`
	DisplayName  string    `json:"display_name"`
	PasswordHash string    `json:"password_hash,omitempty"`
	Issuer       string    `json:"issuer,omitempty"` // external users: their issuer
	Subject      string    `json:"subject,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

func (r record) user() api.User {
	return api.User{ID: r.ID, Username: r.Username, DisplayName: r.DisplayName}
}

type pointer struct {
	UserID string `json:"user_id"`
}

// Accounts registers, authenticates and looks up users.
type Accounts struct {
	store  statestore.Store
	hasher *password.Hasher
	now    func() time.Time
}

// New returns Accounts over store.
func New(store statestore.Store, hasher *password.Hasher) *Accounts {
	return &Accounts{store: store, hasher: hasher, now: time.Now}
}

func userKey(id string) string       { return "user/" + id }
func usernameKey(name string) string { return "username/" + name }
func identityKey(iss, sub string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + sub))
	return "identity/" + hex.EncodeToString(sum[:])
}

// Register creates a user. A taken username is a Conflict (username_taken).
func (a *Accounts) Register(ctx context.Context, username, pw, displayName string) (api.User, error) {
	if err := validate.Username(username); err != nil {
		return api.User{}, err
	}
	if err := validate.Password(pw); err != nil {
		return api.User{}, err
	}
	displayName, err := cleanDisplayName(displayName, username)
	if err != nil {
		return api.User{}, err
	}
	hash, err := a.hasher.Hash(ctx, pw)
	if err != nil {
		return api.User{}, fmt.Errorf("hash password: %w", err)
	}
	rec := record{ID: newID(), Username: username, DisplayName: displayName, PasswordHash: hash, CreatedAt: a.now().UTC()}
	if err := a.create(ctx, rec); err != nil {
		return api.User{}, err
	}
	return rec.user(), nil
}

// create claims rec's username, then writes rec. The claim is an
// insert-if-absent, so of two racing registrations exactly one wins.
func (a *Accounts) create(ctx context.Context, rec record) error {
	ptr, _ := json.Marshal(pointer{UserID: rec.ID})
	err := a.store.Write(ctx, statestore.Op{Key: usernameKey(rec.Username), Value: ptr, IfAbsent: true})
	if errors.Is(err, statestore.ErrConflict) {
		return apierror.New(apierror.Conflict, "username_taken", "username %q is taken", rec.Username)
	}
	if err != nil {
		return fmt.Errorf("claim username: %w", err)
	}
	b, _ := json.Marshal(rec)
	if err := a.store.Write(ctx, statestore.Op{Key: userKey(rec.ID), Value: b, IfAbsent: true}); err != nil {
		// Release the name so a retry can have it.
		_ = a.store.Write(ctx, statestore.Op{Key: usernameKey(rec.Username), Delete: true})
		return fmt.Errorf("write user: %w", err)
	}
	return nil
}

// ErrInvalidCredentials answers every failed login alike, whether the
// user exists or not.
func ErrInvalidCredentials() error {
	return apierror.New(apierror.Unauthenticated, "invalid_credentials", "username or password is wrong")
}

// Authenticate returns the user whose username and password these are.
// Unknown users cost one argon2id verification too, so timing does not
// tell which usernames exist.
func (a *Accounts) Authenticate(ctx context.Context, username, pw string) (api.User, error) {
	if len(pw) > MaxPassword {
		return api.User{}, ErrInvalidCredentials()
	}
	var rec record
	found := false
	if validUsername(username) {
		r, err := a.byUsername(ctx, username)
		switch {
		case err == nil:
			rec, found = r, true
		case !errors.Is(err, statestore.ErrNotFound):
			return api.User{}, err
		}
	}
	if !found || rec.PasswordHash == "" {
		a.hasher.VerifyDummy(ctx, pw)
		return api.User{}, ErrInvalidCredentials()
	}
	ok, err := a.hasher.Verify(ctx, rec.PasswordHash, pw)
	if err != nil {
		return api.User{}, fmt.Errorf("verify password of %s: %w", rec.ID, err)
	}
	if !ok {
		return api.User{}, ErrInvalidCredentials()
	}
	return rec.user(), nil
}

func (a *Accounts) byUsername(ctx context.Context, username string) (record, error) {
	it, err := a.store.Get(ctx, usernameKey(username))
	if err != nil {
		return record{}, err
	}
	var p pointer
	if err := json.Unmarshal(it.Value, &p); err != nil {
		return record{}, fmt.Errorf("decode username %s: %w", username, err)
	}
	return a.get(ctx, p.UserID)
}

func (a *Accounts) get(ctx context.Context, id string) (record, error) {
	it, err := a.store.Get(ctx, userKey(id))
	if err != nil {
		return record{}, err
	}
	var rec record
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return record{}, fmt.Errorf("decode user %s: %w", id, err)
	}
	return rec, nil
}

// Get returns the user with id, or a NotFound error (user_not_found).
func (a *Accounts) Get(ctx context.Context, id string) (api.User, error) {
	if id == "" || len(id) > 128 {
		return api.User{}, apierror.New(apierror.NotFound, "user_not_found", "no such user")
	}
	rec, err := a.get(ctx, id)
	if errors.Is(err, statestore.ErrNotFound) {
		return api.User{}, apierror.New(apierror.NotFound, "user_not_found", "no such user")
	}
	if err != nil {
		return api.User{}, err
	}
	return rec.user(), nil
}

// ByUsername returns the users with exactly this username: none or one.
func (a *Accounts) ByUsername(ctx context.Context, username string) ([]api.User, error) {
	if !validUsername(username) {
		return []api.User{}, nil
	}
	rec, err := a.byUsername(ctx, username)
	if errors.Is(err, statestore.ErrNotFound) {
		return []api.User{}, nil
	}
	if err != nil {
		return nil, err
	}
	return []api.User{rec.user()}, nil
}

// ResolveIdentity returns the local user of an external identity,
// creating it on first use (authn.IdentityResolver). The username is the
// issuer's preferred_username when it is valid and free, else a generated
// one; the mapping is an insert-if-absent, so concurrent first uses agree.
func (a *Accounts) ResolveIdentity(ctx context.Context, id authn.ExternalIdentity) (api.User, error) {
	if id.Issuer == "" || id.Subject == "" || len(id.Issuer) > 512 || len(id.Subject) > 512 {
		return api.User{}, apierror.Invalidf("invalid_identity", "issuer and subject are required (at most 512 bytes each)")
	}
	key := identityKey(id.Issuer, id.Subject)
	if u, err := a.identityUser(ctx, key); err == nil || !errors.Is(err, statestore.ErrNotFound) {
		return u, err
	}
	rec := record{ID: newID(), Issuer: id.Issuer, Subject: id.Subject, CreatedAt: a.now().UTC()}
	candidates := []string{}
	if name := usernameFromHint(id.Username); name != "" {
		candidates = append(candidates, name)
	}
	candidates = append(candidates, "ext-"+rec.ID[:12], "ext-"+newID()[:16])
	var err error
	for _, name := range candidates {
		rec.Username = name
		rec.DisplayName, _ = cleanDisplayName(id.DisplayName, name)
		if err = a.create(ctx, rec); apierror.CodeOf(err) != "username_taken" {
			break
		}
	}
	if err != nil {
		return api.User{}, err
	}
	ptr, _ := json.Marshal(pointer{UserID: rec.ID})
	err = a.store.Write(ctx, statestore.Op{Key: key, Value: ptr, IfAbsent: true})
	if errors.Is(err, statestore.ErrConflict) {
		// Another request mapped this identity first: use its user and
		// drop ours.
		_ = a.store.Transact(ctx, []statestore.Op{{Key: userKey(rec.ID), Delete: true}, {Key: usernameKey(rec.Username), Delete: true}})
		return a.identityUser(ctx, key)
	}
	if err != nil {
		return api.User{}, fmt.Errorf("map identity: %w", err)
	}
	return rec.user(), nil
}

func (a *Accounts) identityUser(ctx context.Context, key string) (api.User, error) {
	it, err := a.store.Get(ctx, key)
	if err != nil {
		return api.User{}, err
	}
	var p pointer
	if err := json.Unmarshal(it.Value, &p); err != nil {
		return api.User{}, fmt.Errorf("decode identity: %w", err)
	}
	rec, err := a.get(ctx, p.UserID)
	if err != nil {
		return api.User{}, fmt.Errorf("user of identity: %w", err)
	}
	return rec.user(), nil
}

// usernameFromHint turns an issuer's preferred_username into a valid papo
// username, or "" when nothing usable is left.
func usernameFromHint(hint string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(hint) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		case r == '@' || r == ' ' || r == '+':
			b.WriteRune('.')
		}
		if b.Len() == 32 {
			break
		}
	}
	if s := b.String(); validUsername(s) {
		return s
	}
	return ""
}

// cleanDisplayName trims name and defaults it to username; a name that
// breaks the display-name rules (validate.DisplayName) is refused.
func cleanDisplayName(name, username string) (string, error) {
	name, err := validate.DisplayName(name)
	if err != nil {
		return username, err
	}
	if name == "" {
		return username, nil
	}
	return name, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
