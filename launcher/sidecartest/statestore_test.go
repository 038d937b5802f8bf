package sidecartest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/papochat/papo/launcher/sidecartest"
	"github.com/papochat/papo/platform/statestore/daprstore"
	"github.com/papochat/papo/platform/statestore/storetest"
)

// TestStateStoreContract runs the one store contract suite against every
// state store this machine has, each through a real daprd sidecar.
func TestStateStoreContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daprd sidecars")
	}
	// MongoDB runs only where PAPO_MONGODB_URL names a replica set (its
	// transactions need one): the database papo_contract, a collection
	// of this run's own.
	mongoURL := os.Getenv("PAPO_MONGODB_URL")
	stores := []struct {
		name, typ, needs string
		meta             func(dir string) string
		opts             storetest.Options
	}{
		{"sqlite", "state.sqlite", "", func(dir string) string {
			return meta("connectionString", filepath.Join(dir, "contract.db"))
		}, storetest.Options{}},
		{"redis", "state.redis", "127.0.0.1:6379", func(string) string {
			return meta("redisHost", "127.0.0.1:6379")
		}, storetest.Options{NonAtomicConflicts: true}},
		{"postgresql", "state.postgresql", "127.0.0.1:5432", func(string) string {
			return meta("connectionString", "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
		}, storetest.Options{}},
		{"mysql", "state.mysql", "127.0.0.1:3306", func(string) string {
			return meta("connectionString", "root:@tcp(127.0.0.1:3306)/?allowNativePasswords=true") +
				meta("schemaName", "test") + meta("tableName", "papo_contract")
		}, storetest.Options{}},
		{"mongodb", "state.mongodb", "", func(string) string {
			return meta("connectionString", mongoURL) + meta("databaseName", "papo_contract") +
				meta("collectionName", fmt.Sprintf("contract_%d", time.Now().UnixNano())) + meta("operationTimeout", "10s")
		}, storetest.Options{}},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			if s.needs != "" {
				sidecartest.NeedTCP(t, s.name, s.needs)
			}
			if s.typ == "state.mongodb" && mongoURL == "" {
				// The one infrastructure test that skips even under
				// PAPO_REQUIRE_INFRA=1: no MongoDB can be had on this
				// project's machines (README.md, docs/deploy.md).
				t.Skip("PAPO_MONGODB_URL is not set: no MongoDB replica set to run the suite on (set it to one, e.g. mongodb://127.0.0.1:27017/?replicaSet=rs0)")
			}
			component := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: store
spec:
  type: %s
  version: v1
  metadata:
%s`, s.typ, s.meta(t.TempDir()))
			sc := sidecartest.Start(t, sidecartest.Options{
				AppID:      "contract-" + s.name,
				Components: map[string]string{"store.yaml": component},
			})
			reg := prometheus.NewRegistry()
			storetest.Run(t, daprstore.New(sc.Client, "store", daprstore.WithMetrics(daprstore.NewMetrics(reg))), s.opts)
			// The suite's calls were timed, each by what it became.
			for _, want := range [][2]string{{"get", "ok"}, {"get", "not_found"}, {"bulk_get", "ok"},
				{"save", "ok"}, {"save", "conflict"}, {"transact", "ok"}, {"delete", "ok"}} {
				if n := histogramCount(t, reg, "store", want[0], want[1]); n == 0 {
					t.Errorf("no %s call with result %s timed", want[0], want[1])
				}
			}
		})
	}
}

// histogramCount is the count of papo_state_operation_duration_seconds
// for one store, operation and result.
func histogramCount(t *testing.T, reg *prometheus.Registry, store, op, result string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "papo_state_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["store"] == store && labels["operation"] == op && labels["result"] == result {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func meta(name, value string) string {
	return fmt.Sprintf("    - name: %s\n      value: %q\n", name, value)
}
