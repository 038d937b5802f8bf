// Command daprd is the Dapr 1.14.0 sidecar pinned by papo.
//
// It is upstream daprd built with the stable component set (build tag
// stablecomponents) plus the few components papo's profiles need that
// upstream leaves out of that set: the NATS JetStream pub/sub (the local
// profile's broker) and the SQLite name resolver (which keeps several local
// stacks on one machine from resolving each other's app-ids, as mDNS would).
//
// It also serves Dapr's Prometheus metrics on the address in
// PAPO_DAPRD_METRICS_ADDR (the launcher gives each sidecar a loopback
// port), because upstream 1.14.0 ignores --metrics-listen-address
// (pkg/metrics FlagOptions.ToOptions drops it) and its own metrics server
// listens on every interface: verified by running it with
// --metrics-listen-address 127.0.0.1, it bound *:port. The launcher runs
// daprd with --enable-metrics=false and this server takes its place,
// exporting the same views (recorded whenever the Configuration enables
// metrics) with the same "dapr" namespace.
//
// This module stays outside go.work: its dependency graph is huge and must
// not move the services' dependencies.
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	ocprom "contrib.go.opencensus.io/exporter/prometheus"
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/components-contrib/pubsub/jetstream"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
	prom "github.com/prometheus/client_golang/prometheus"
)

func init() {
	pubsubLoader.DefaultRegistry.RegisterComponent(jetstream.NewJetStream, "jetstream")
	nrLoader.DefaultRegistry.RegisterComponent(sqlite.NewResolver, "sqlite")
}

func main() {
	if addr := os.Getenv("PAPO_DAPRD_METRICS_ADDR"); addr != "" {
		if err := serveMetrics(addr); err != nil {
			fmt.Fprintf(os.Stderr, "daprd: metrics on %s: %v\n", addr, err)
			os.Exit(1)
		}
	}
	app.Run()
}

// serveMetrics exports Dapr's OpenCensus views as Prometheus metrics on
// addr, as daprd's own metrics server would (same registry, same
// namespace), for as long as the process lives.
func serveMetrics(addr string) error {
	reg, ok := prom.DefaultRegisterer.(*prom.Registry)
	if !ok {
		return errors.New("the default Prometheus registerer is not a registry")
	}
	exp, err := ocprom.NewExporter(ocprom.Options{Namespace: "dapr", Registry: reg})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", exp)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return nil
}
