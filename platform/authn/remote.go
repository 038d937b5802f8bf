package authn

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/papochat/papo/platform/apierror"
	"github.com/papochat/papo/platform/invoke"
)

// JWKSPath is the auth service's route that publishes its JWK Set.
const JWKSPath = "/api/v1/auth/jwks"

// FetchJWKS returns the raw bytes of a JWK Set.
type FetchJWKS func(ctx context.Context) ([]byte, error)

// RemoteKeysOptions tune a RemoteKeys. Zero values take the defaults.
type RemoteKeysOptions struct {
	// Path is the route of the JWKS on the auth app; default JWKSPath.
	Path string
	// MinRefetch is the least time between two fetches, however many
	// unknown kids arrive, so forged tokens cannot hammer the issuer;
	// default 10 s.
	MinRefetch time.Duration
	// MaxAge is how long a fetched set is used before it is refreshed on
	// the next lookup; default 10 min. A failed refresh keeps the old set.
	MaxAge time.Duration
	// Timeout bounds one fetch; default 5 s.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *RemoteKeysOptions) defaults() {
	if o.Path == "" {
		o.Path = JWKSPath
	}
	if o.MinRefetch <= 0 {
		o.MinRefetch = 10 * time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 10 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// RemoteKeys is a KeySource over a JWK Set fetched from elsewhere: the auth
// service through Dapr invocation (NewRemoteKeys) or an external OIDC
// issuer over HTTPS (NewHTTPKeys). It caches the set and refetches it when
// a token names an unknown kid (key rotation), at most once per MinRefetch.
type RemoteKeys struct {
	fetch FetchJWKS
	opts  RemoteKeysOptions

	// fetchMu serialises fetches; mu guards the fields below and is never
	// held during a fetch, so lookups of known keys do not wait on one.
	fetchMu   sync.Mutex
	mu        sync.Mutex
	keys      map[string]crypto.PublicKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt
	fetches   int
}

// NewFetchedKeys returns a RemoteKeys over any fetch function.
func NewFetchedKeys(fetch FetchJWKS, opts RemoteKeysOptions) *RemoteKeys {
	opts.defaults()
	return &RemoteKeys{fetch: fetch, opts: opts}
}

// NewRemoteKeys returns a RemoteKeys that fetches the JWKS of the Dapr
// app appID (the auth service) through service invocation.
func NewRemoteKeys(inv *invoke.Client, appID string, opts RemoteKeysOptions) *RemoteKeys {
	opts.defaults()
	path := opts.Path
	return NewFetchedKeys(func(ctx context.Context) ([]byte, error) {
		var raw json.RawMessage
		if err := inv.Do(ctx, appID, http.MethodGet, path, nil, nil, &raw); err != nil {
			return nil, err
		}
		return raw, nil
	}, opts)
}

// NewHTTPKeys returns a RemoteKeys that fetches a JWKS from url directly,
// for external OIDC issuers. hc may be nil.
func NewHTTPKeys(hc *http.Client, url string, opts RemoteKeysOptions) *RemoteKeys {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return NewFetchedKeys(func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}, opts)
}

// Key implements KeySource.
func (k *RemoteKeys) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if pub, ok, fetch := k.lookup(kid); !fetch {
		if ok {
			return pub, nil
		}
		// No fetch is allowed now, but one may be in flight (the very
		// first, while a burst of connections arrives): wait for it and
		// look again rather than refuse a key it is about to bring.
		k.fetchMu.Lock()
		pub, ok, _ = k.lookup(kid)
		k.fetchMu.Unlock()
		if ok {
			return pub, nil
		}
		return nil, ErrUnknownKey
	}
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	// Another caller may have fetched while this one waited.
	pub, ok, fetch := k.lookup(kid)
	if !fetch {
		if ok {
			return pub, nil
		}
		return nil, ErrUnknownKey
	}
	k.mu.Lock()
	k.triedAt = k.opts.Now()
	k.fetches++
	k.mu.Unlock()

	fctx, cancel := context.WithTimeout(ctx, k.opts.Timeout)
	defer cancel()
	keys, err := k.load(fctx)
	if err != nil {
		if ok {
			return pub, nil // a stale set still verifies what it knows
		}
		// err may hold what a sidecar answered (addresses, URLs): the
		// client reads only papo's own account of an outage.
		reason := "retry shortly"
		if e, ok := apierror.As(err); ok && e.Kind == apierror.Unavailable {
			reason = e.Message
		}
		return nil, apierror.New(apierror.Unavailable, "keys_unavailable", "signing keys are unavailable: %s", reason)
	}
	k.mu.Lock()
	k.keys, k.fetchedAt = keys, k.opts.Now()
	k.mu.Unlock()
	if pub, ok := keys[kid]; ok {
		return pub, nil
	}
	return nil, ErrUnknownKey
}

// lookup returns the cached key for kid, and whether a fetch is due and
// allowed: the kid is unknown or the set is old, and the last attempt is
// at least MinRefetch ago.
func (k *RemoteKeys) lookup(kid string) (pub crypto.PublicKey, ok, fetch bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.opts.Now()
	pub, ok = k.keys[kid]
	stale := k.keys == nil || now.Sub(k.fetchedAt) >= k.opts.MaxAge
	if ok && !stale {
		return pub, true, false
	}
	allowed := k.triedAt.IsZero() || now.Sub(k.triedAt) >= k.opts.MinRefetch
	return pub, ok, allowed
}

func (k *RemoteKeys) load(ctx context.Context) (map[string]crypto.PublicKey, error) {
	b, err := k.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	return ParseJWKS(b)
}

// Fetches reports how many fetches were attempted, for tests and metrics.
func (k *RemoteKeys) Fetches() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetches
}
