package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	authSqlite "github.com/dapr/components-contrib/common/authentication/sqlite"
	"github.com/dapr/components-contrib/nameresolution"
	"github.com/dapr/kit/logger"
	kitmd "github.com/dapr/kit/metadata"
)

// resolveCacheTTL is how long a resolved app-id's addresses are reused. A
// restarted app registers at a new port and is found again at most this
// long after it registered; a lookup that fails is never cached.
const resolveCacheTTL = 1500 * time.Millisecond

// errNoHost is returned when no live sidecar is registered for an app-id
// (the upstream resolver's error says the same).
var errNoHost = errors.New("no host found with the given ID")

// cachingResolver is Dapr 1.14's SQLite name resolver with a short-lived
// cache in front of its lookups. Upstream runs one SQL query per service
// invocation (no cache: profiling showed ws's sidecar spending about a
// quarter of its CPU there); this one reads every live address of an
// app-id at once, keeps them for ttl and picks one at random per call, so
// replicas still share the load as they do upstream. Registration,
// renewal and clean-up stay upstream's (inner).
type cachingResolver struct {
	inner nameresolution.Resolver
	ttl   time.Duration
	now   func() time.Time

	db      *sql.DB
	query   string
	timeout time.Duration

	mu    sync.Mutex
	cache map[string]cachedHosts
}

type cachedHosts struct {
	addrs   []string
	expires time.Time
}

// newCachingResolver returns a factory for daprd's registry that wraps the
// resolvers newInner makes.
func newCachingResolver(newInner func(logger.Logger) nameresolution.Resolver, ttl time.Duration) func(logger.Logger) nameresolution.Resolver {
	return func(l logger.Logger) nameresolution.Resolver {
		return &cachingResolver{inner: newInner(l), ttl: ttl, now: time.Now, cache: map[string]cachedHosts{}}
	}
}

// sqliteConfig is the part of the upstream resolver's configuration the
// lookups need, with upstream's defaults.
type sqliteConfig struct {
	authSqlite.SqliteAuthMetadata `mapstructure:",squash"`

	TableName      string        `mapstructure:"tableName"`
	UpdateInterval time.Duration `mapstructure:"updateInterval"`
}

// Init initializes the upstream resolver (which registers this sidecar)
// and opens a connection of its own to the same database for lookups.
func (r *cachingResolver) Init(ctx context.Context, md nameresolution.Metadata) error {
	if err := r.inner.Init(ctx, md); err != nil {
		return err
	}
	var c sqliteConfig
	c.SqliteAuthMetadata.Reset()
	c.Timeout = time.Second
	c.BusyTimeout = 800 * time.Millisecond
	c.TableName = "hosts"
	c.UpdateInterval = 5 * time.Second
	if err := kitmd.DecodeMetadata(md.Configuration, &c); err != nil {
		return fmt.Errorf("sqlite name resolution: %w", err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("sqlite name resolution: %w", err)
	}
	// The upstream Init validated the table name and the interval.
	conn, err := c.GetConnectionString(logger.NewLogger("papo.nrcache"), authSqlite.GetConnectionStringOpts{})
	if err != nil {
		return fmt.Errorf("sqlite name resolution: %w", err)
	}
	r.db, err = sql.Open("sqlite", conn)
	if err != nil {
		return fmt.Errorf("sqlite name resolution: open for lookups: %w", err)
	}
	r.timeout = c.Timeout
	//nolint:gosec // the table name is validated upstream
	r.query = fmt.Sprintf(`SELECT address FROM %s
		WHERE app_id = ? AND unixepoch(CURRENT_TIMESTAMP) - last_update < %d`,
		c.TableName, int(c.UpdateInterval.Seconds()))
	return nil
}

// ResolveID returns one live address of req.ID, from the cache when it
// was looked up less than ttl ago.
func (r *cachingResolver) ResolveID(ctx context.Context, req nameresolution.ResolveRequest) (string, error) {
	now := r.now()
	r.mu.Lock()
	c, ok := r.cache[req.ID]
	r.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.addrs[rand.IntN(len(c.addrs))], nil
	}
	addrs, err := r.lookup(ctx, req.ID)
	if err != nil {
		// Forget what was cached: the next call asks the database again.
		r.mu.Lock()
		delete(r.cache, req.ID)
		r.mu.Unlock()
		return "", err
	}
	r.mu.Lock()
	r.cache[req.ID] = cachedHosts{addrs: addrs, expires: now.Add(r.ttl)}
	r.mu.Unlock()
	return addrs[rand.IntN(len(addrs))], nil
}

// lookup reads every live address of appID.
func (r *cachingResolver) lookup(ctx context.Context, appID string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, r.query, appID)
	if err != nil {
		return nil, fmt.Errorf("failed to look up address: %w", err)
	}
	defer rows.Close()
	var addrs []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("failed to look up address: %w", err)
		}
		addrs = append(addrs, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to look up address: %w", err)
	}
	if len(addrs) == 0 {
		return nil, errNoHost
	}
	return addrs, nil
}

// Close closes the lookup connection and the upstream resolver (which
// removes this sidecar's registration).
func (r *cachingResolver) Close() error {
	var errs []error
	if r.db != nil {
		errs = append(errs, r.db.Close())
	}
	if c, ok := r.inner.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
