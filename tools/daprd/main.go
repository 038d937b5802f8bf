// Command daprd is the Dapr 1.14.0 sidecar pinned by papo.
//
// It is upstream daprd built with the stable component set (build tag
// stablecomponents) plus the few components papo's profiles need that
// upstream leaves out of that set: the NATS JetStream pub/sub (the local
// profile's broker) and the SQLite name resolver (which keeps several local
// stacks on one machine from resolving each other's app-ids, as mDNS would).
//
// This module stays outside go.work: its dependency graph is huge and must
// not move the services' dependencies.
package main

import (
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/components-contrib/pubsub/jetstream"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
)

func init() {
	pubsubLoader.DefaultRegistry.RegisterComponent(jetstream.NewJetStream, "jetstream")
	nrLoader.DefaultRegistry.RegisterComponent(sqlite.NewResolver, "sqlite")
}

func main() {
	app.Run()
}
