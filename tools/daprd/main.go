// Command daprd is the Dapr 1.14.0 sidecar pinned by papo.
//
// It is upstream daprd (run.go) with only the components papo's profiles
// and deploy descriptions use (components.go) instead of upstream's stable
// set, whose cloud SDKs made the first build several times longer: the
// NATS JetStream, Redis, RabbitMQ and Kafka pub/subs; the SQLite, Redis,
// PostgreSQL, MySQL and MongoDB state stores; the local and Kubernetes
// secret stores; the HTTP output binding; and the SQLite (with a short
// lookup cache, nrcache.go), mDNS and Kubernetes name resolvers.
// "daprd papo-components" lists them.
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
	prom "github.com/prometheus/client_golang/prometheus"
)

func init() { register() }

func main() {
	if len(os.Args) == 2 && os.Args[1] == "papo-components" {
		listComponents(os.Stdout)
		return
	}
	if addr := os.Getenv("PAPO_DAPRD_METRICS_ADDR"); addr != "" {
		if err := serveMetrics(addr); err != nil {
			fmt.Fprintf(os.Stderr, "daprd: metrics on %s: %v\n", addr, err)
			os.Exit(1)
		}
	}
	run()
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
