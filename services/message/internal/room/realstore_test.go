package room_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/papochat/papo/launcher/sidecartest"
	"github.com/papochat/papo/platform/statestore/daprstore"
)

// TestTwoReplicasOnRealStores runs the two-replica append test against
// every Dapr state store this machine has, each through a real daprd
// sidecar: the append algorithm must be gap-free and idempotent on stores
// whose transactions are atomic (SQLite, PostgreSQL, MySQL) and on Redis,
// whose transactions are not; and both users opening their DM at once
// through both replicas must make one room whose founding events are
// announced once; and a delete must erase the text from the store.
func TestTwoReplicasOnRealStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daprd sidecars")
	}
	meta := func(name, value string) string { return fmt.Sprintf("    - name: %s\n      value: %q\n", name, value) }
	stores := []struct {
		name, typ, needs string
		meta             func(dir string) string
	}{
		{"sqlite", "state.sqlite", "", func(dir string) string { return meta("connectionString", filepath.Join(dir, "message.db")) }},
		{"redis", "state.redis", "127.0.0.1:6379", func(string) string { return meta("redisHost", "127.0.0.1:6379") }},
		{"postgresql", "state.postgresql", "127.0.0.1:5432", func(string) string {
			return meta("connectionString", "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
		}},
		{"mysql", "state.mysql", "127.0.0.1:3306", func(string) string {
			return meta("connectionString", "root:@tcp(127.0.0.1:3306)/?allowNativePasswords=true") +
				meta("schemaName", "test") + meta("tableName", "papo_message_test")
		}},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			if s.needs != "" {
				sidecartest.NeedTCP(t, s.name, s.needs)
			}
			component := fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: messagestore\nspec:\n  type: %s\n  version: v1\n  metadata:\n%s",
				s.typ, s.meta(t.TempDir()))
			sc := sidecartest.Start(t, sidecartest.Options{
				AppID:      "message-test-" + s.name,
				Components: map[string]string{"messagestore.yaml": component},
			})
			store := daprstore.New(sc.Client, "messagestore")
			twoReplicas(t, store)
			twoReplicasManyRooms(t, store)
			concurrentDMOpens(t, store)
			deleteErases(t, store)
		})
	}
}
