package sidecartest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/papochat/papo/launcher"
	"github.com/papochat/papo/launcher/sidecartest"
)

// TestSidecarsOpenAFreshSQLiteFileTogether starts three sidecars at the
// same moment on one SQLite file that the launcher created (as the
// notification replicas and every sidecar's name resolver do): each
// inits its state.sqlite component, stores and reads back a value, and
// the file is a WAL database still. The launcher's empty database is a
// file SQLite accepts (an invalid one fails every sidecar with "file is
// not a database"), and with it no sidecar has to switch the journal mode
// while others open the file (without it: 6 in 100 concurrent opens
// failed with SQLITE_BUSY and the sidecar exited).
func TestSidecarsOpenAFreshSQLiteFileTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daprd sidecars")
	}
	for round := range 2 {
		path := filepath.Join(t.TempDir(), "shared.db")
		if err := launcher.CreateSQLiteFile(path); err != nil {
			t.Fatal(err)
		}
		component := `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: store
spec:
  type: state.sqlite
  version: v1
  metadata:
` + meta("connectionString", path)
		t.Run(fmt.Sprint("round-", round), func(t *testing.T) {
			for i := range 3 {
				t.Run(fmt.Sprint("sidecar-", i), func(t *testing.T) {
					t.Parallel()
					sc := sidecartest.Start(t, sidecartest.Options{
						AppID:      fmt.Sprintf("sqlite-%d", i),
						Components: map[string]string{"store.yaml": component},
					})
					ctx := context.Background()
					want := fmt.Sprintf("value of %d", i)
					if err := sc.Client.SaveState(ctx, "store", "k", []byte(want), nil); err != nil {
						t.Fatal(err)
					}
					got, err := sc.Client.GetState(ctx, "store", "k", nil)
					if err != nil {
						t.Fatal(err)
					}
					if string(got.Value) != want {
						t.Fatalf("read back %q, want %q", got.Value, want)
					}
				})
			}
		})
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 100 || b[18] != 2 || b[19] != 2 {
			t.Fatalf("%s is not a WAL database after use (header % x)", path, b[:min(len(b), 24)])
		}
	}
}
