package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/papochat/papo/launcher"
)

// freshStore makes a copy of a profile's component files whose stores
// live in a database (MySQL) or tables (PostgreSQL) of their own, named
// after name, and drops them; drop removes them again.
type freshStore struct {
	profile string
	// rewrite turns a component file of the profile into one on name.
	rewrite func(yaml, name string) string
	// drop removes what the stack created on name.
	drop func(ctx context.Context, name string) error
}

var freshStores = []freshStore{
	{
		profile: "nats-mysql",
		rewrite: func(y, name string) string {
			return strings.ReplaceAll(y, "name: schemaName\n      value: papo\n", "name: schemaName\n      value: "+name+"\n")
		},
		drop: func(ctx context.Context, name string) error {
			db, err := sql.Open("mysql", "root:@tcp(127.0.0.1:3306)/?allowNativePasswords=true")
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
			return err
		},
	},
	{
		profile: "kafka-postgres",
		rewrite: func(y, name string) string {
			// Tables of its own, and a migrations table of its own too
			// (the stores create it together).
			return strings.ReplaceAll(y, "name: tablePrefix\n      value: papo_kafka_",
				"name: metadataTableName\n      value: "+name+"_metadata\n    - name: tablePrefix\n      value: "+name+"_")
		},
		drop: func(ctx context.Context, name string) error {
			conn, err := pgx.Connect(ctx, "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE $1", name+"\\_%")
			if err != nil {
				return err
			}
			tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, tb := range tables {
				if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{tb}.Sanitize()); err != nil {
					return err
				}
			}
			return nil
		},
	},
}

// TestFreshStoresStartEveryTime (issue 23): on a database server where the
// profile's database (MySQL) or tables (PostgreSQL) do not exist, the
// stack starts ten times in a row and gets ready every time. Dapr 1.14's
// stores create them at start, and sidecars that did so at once raced:
// MySQL's loser exited with "Can't create database"; the launcher now
// starts one sidecar of every such store first (launcher/stores.go).
func TestFreshStoresStartEveryTime(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts whole stacks")
	}
	root, err := launcher.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, fs := range freshStores {
		t.Run(fs.profile, func(t *testing.T) {
			name := randomName("papo_race_")
			dir := profileComponents(t, root, fs.profile, func(y string) string { return fs.rewrite(y, name) })
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := fs.drop(ctx, name); err != nil {
					t.Errorf("drop %s: %v", name, err)
				}
			})
			for i := 1; i <= 10; i++ {
				if err := startFresh(t, root, fs, dir, name); err != nil {
					t.Fatalf("start %d of 10 on a fresh %s: %v", i, name, err)
				}
			}
		})
	}
}

// startFresh drops the store, starts the stack on the components in dir,
// and stops it once it is ready.
func startFresh(t *testing.T, root string, fs freshStore, dir, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := fs.drop(ctx, name); err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	tail := &logTail{}
	tail.showOnFailure(t)
	s, err := launcher.Start(ctx, launcher.Options{
		Root:          root,
		Profile:       fs.profile,
		ComponentsDir: dir,
		DataDir:       t.TempDir(),
		GatewayAddr:   "127.0.0.1:0",
		Log:           tail,
		Progress:      tail,
		Alerts:        tail,
		Env:           map[string]string{"LOG_LEVEL": "warn"},
	})
	if err != nil {
		if errors.Is(err, launcher.ErrInfraMissing) && os.Getenv("PAPO_REQUIRE_INFRA") != "1" {
			t.Skip(err)
		}
		return err
	}
	s.Stop()
	return nil
}

// TestAComponentThatFailsAtStartIsNamed (issue 23): a store that cannot
// initialize (here MySQL refuses the user) fails the start with an error
// that names the component, its type and daprd's cause, not only in the
// sidecar's log lines.
func TestAComponentThatFailsAtStartIsNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts a stack")
	}
	root, err := launcher.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	fs := freshStores[0] // nats-mysql
	dir := profileComponents(t, root, fs.profile, func(y string) string {
		return strings.ReplaceAll(y, `"root:@tcp(`, `"papo_no_such_user:@tcp(`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := launcher.Start(ctx, launcher.Options{
		Root:          root,
		Profile:       fs.profile,
		ComponentsDir: dir,
		DataDir:       t.TempDir(),
		GatewayAddr:   "127.0.0.1:0",
		Log:           io.Discard,
		Progress:      io.Discard,
		Env:           map[string]string{"LOG_LEVEL": "warn"},
	})
	if err == nil {
		s.Stop()
		t.Fatal("the stack started with a store that cannot log in")
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	t.Logf("the start failed with: %s", first)
	if !strings.Contains(first, "component authstore (state.mysql/v1) failed to initialize: ") ||
		!strings.Contains(first, "Access denied for user 'papo_no_such_user'") {
		t.Fatalf("the start failed with %q; want its first line to name authstore (state.mysql/v1) and MySQL's refusal", first)
	}
}

// profileComponents copies profile's component files, each passed through
// rewrite, into a new folder and returns it; the profile's servers must
// be up (a skip without them, a failure under PAPO_REQUIRE_INFRA=1).
func profileComponents(t *testing.T, root, profile string, rewrite func(string) string) string {
	t.Helper()
	if err := launcher.Profiles[profile].CheckNeeds(context.Background()); err != nil {
		if os.Getenv("PAPO_REQUIRE_INFRA") != "1" {
			t.Skipf("%v (PAPO_REQUIRE_INFRA=1 makes this a failure)", err)
		}
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(root, "components", profile)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(rewrite(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
