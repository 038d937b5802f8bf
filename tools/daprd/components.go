package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/dapr/components-contrib/bindings/http"
	nrkubernetes "github.com/dapr/components-contrib/nameresolution/kubernetes"
	"github.com/dapr/components-contrib/nameresolution/mdns"
	nrsqlite "github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/components-contrib/pubsub/jetstream"
	"github.com/dapr/components-contrib/pubsub/kafka"
	"github.com/dapr/components-contrib/pubsub/rabbitmq"
	pubsubredis "github.com/dapr/components-contrib/pubsub/redis"
	sskubernetes "github.com/dapr/components-contrib/secretstores/kubernetes"
	"github.com/dapr/components-contrib/secretstores/local/env"
	"github.com/dapr/components-contrib/secretstores/local/file"
	"github.com/dapr/components-contrib/state/mongodb"
	"github.com/dapr/components-contrib/state/mysql"
	pgv1 "github.com/dapr/components-contrib/state/postgresql/v1"
	pgv2 "github.com/dapr/components-contrib/state/postgresql/v2"
	stateredis "github.com/dapr/components-contrib/state/redis"
	statesqlite "github.com/dapr/components-contrib/state/sqlite"
	"github.com/dapr/dapr/pkg/components"
	bindingsLoader "github.com/dapr/dapr/pkg/components/bindings"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
	secretstoresLoader "github.com/dapr/dapr/pkg/components/secretstores"
	stateLoader "github.com/dapr/dapr/pkg/components/state"
	wfbeLoader "github.com/dapr/dapr/pkg/components/wfbackend"
	"github.com/dapr/dapr/pkg/runtime/wfengine/backends/actors"
)

// registered names every component type this daprd knows, as a component
// file spells it (spec.type and spec.version; name resolvers as a
// Configuration's nameResolution.component). It is exactly what papo's
// profiles and deploy descriptions use (components/, k8s/, the launcher's
// nameresolution.yaml): upstream's stablecomponents tag builds about 50
// more, with the cloud SDKs behind them, which made the first build of
// daprd take minutes longer. TestEveryComponentFileIsRegistered fails
// when a committed component file names a type missing here; a user who
// needs another runs papo on an official daprd 1.14.x (README).
var registered = []string{
	"bindings.http/v1",
	"nameresolution.kubernetes/v1",
	"nameresolution.mdns/v1",
	"nameresolution.sqlite/v1",
	"pubsub.jetstream/v1",
	"pubsub.kafka/v1",
	"pubsub.rabbitmq/v1",
	"pubsub.redis/v1",
	"secretstores.kubernetes/v1",
	"secretstores.local.env/v1",
	"secretstores.local.file/v1",
	"state.mongodb/v1",
	"state.mysql/v1",
	"state.postgresql/v1",
	"state.postgresql/v2",
	"state.redis/v1",
	"state.sqlite/v1",
	"workflowbackend.actors/v1",
}

// register adds papo's component set to daprd's default registries, as
// upstream's cmd/daprd/components files do (same names and versions).
func register() {
	bindingsLoader.DefaultRegistry.RegisterOutputBinding(http.NewHTTP, "http")

	nrLoader.DefaultRegistry.RegisterComponent(nrkubernetes.NewResolver, "kubernetes")
	nrLoader.DefaultRegistry.RegisterComponent(mdns.NewResolver, "mdns")
	// The SQLite resolver answers from a short-lived cache (nrcache.go)
	// under its own name, so Configuration files stay as they are.
	nrLoader.DefaultRegistry.RegisterComponent(newCachingResolver(nrsqlite.NewResolver, resolveCacheTTL), "sqlite")

	pubsubLoader.DefaultRegistry.RegisterComponent(jetstream.NewJetStream, "jetstream")
	pubsubLoader.DefaultRegistry.RegisterComponent(kafka.NewKafka, "kafka")
	pubsubLoader.DefaultRegistry.RegisterComponent(rabbitmq.NewRabbitMQ, "rabbitmq")
	pubsubLoader.DefaultRegistry.RegisterComponent(pubsubredis.NewRedisStreams, "redis")

	secretstoresLoader.DefaultRegistry.RegisterComponent(sskubernetes.NewKubernetesSecretStore, "kubernetes")
	secretstoresLoader.DefaultRegistry.RegisterComponent(env.NewEnvSecretStore, "local.env")
	secretstoresLoader.DefaultRegistry.RegisterComponent(file.NewLocalSecretStore, "local.file")

	stateLoader.DefaultRegistry.RegisterComponent(mongodb.NewMongoDB, "mongodb")
	stateLoader.DefaultRegistry.RegisterComponent(mysql.NewMySQLStateStore, "mysql")
	for _, name := range []string{"postgres", "postgresql"} {
		stateLoader.DefaultRegistry.RegisterComponentWithVersions(name, components.Versioning{
			Preferred: components.VersionConstructor{Version: "v2", Constructor: pgv2.NewPostgreSQLStateStore},
			Others:    []components.VersionConstructor{{Version: "v1", Constructor: pgv1.NewPostgreSQLStateStore}},
			Default:   "v1",
		})
	}
	stateLoader.DefaultRegistry.RegisterComponent(stateredis.NewRedisStateStore, "redis")
	stateLoader.DefaultRegistry.RegisterComponent(statesqlite.NewSQLiteStateStore, "sqlite", "sqlite3")

	// Upstream registers the actors workflow backend in every build (it
	// is the default one).
	wfbeLoader.DefaultRegistry.RegisterComponent(actors.NewActorBackend, "actor", "actors")
}

// listComponents writes the registered component types, one a line: the
// "daprd papo-components" self-check.
func listComponents(w io.Writer) {
	names := append([]string(nil), registered...)
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintln(w, n)
	}
}
