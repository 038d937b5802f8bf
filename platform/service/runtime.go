package service

import (
	"io"
	"log/slog"
	"sync"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/papochat/papo/platform/events"
	"github.com/papochat/papo/platform/invoke"
	"github.com/papochat/papo/platform/pubsub"
	"github.com/papochat/papo/platform/settings"
	"github.com/papochat/papo/platform/sidecar"
	"github.com/papochat/papo/platform/statestore/daprstore"
	"github.com/papochat/papo/platform/telemetry"
)

// Runtime is what every service's run builds first, from the settings
// every service reads, in this order: the JSON logger, telemetry (the
// metrics registry and listener, tracing), and the clients of its
// sidecar. None of them waits for the sidecar: the SDK client connects
// lazily, so run can listen before daprd (which waits for the app's port)
// is up. Close releases them in reverse order.
type Runtime struct {
	Log *slog.Logger
	Tel *telemetry.Telemetry
	// Sidecar is the Dapr SDK client (gRPC): state, pub/sub, secrets,
	// bindings, streaming subscriptions.
	Sidecar dapr.Client
	// Invoke calls other apps through the sidecar (HTTP).
	Invoke *invoke.Client
	// Probe says whether the sidecar is ready (/readyz, and what waits
	// for it).
	Probe *sidecar.Probe

	publisherOnce sync.Once
	publisher     *pubsub.Publisher
}

// Start builds the Runtime of the service name from base, logging to
// stdout.
func Start(base settings.Base, name string, stdout io.Writer) (*Runtime, error) {
	log := base.Logger(stdout, name)
	tel, err := telemetry.Start(base.Telemetry, name, log)
	if err != nil {
		return nil, err
	}
	client, err := sidecar.Client(base.DaprGRPCPort, base.DaprAPIToken)
	if err != nil {
		tel.Close()
		return nil, err
	}
	return &Runtime{
		Log:     log,
		Tel:     tel,
		Sidecar: client,
		Invoke:  invoke.New(base.DaprHTTPPort, base.DaprAPIToken),
		Probe:   sidecar.NewProbe(base.DaprHTTPPort),
	}, nil
}

// Publisher publishes through the sidecar, timing every publish in
// papo_pubsub_publish_duration_seconds (registered on first use, so a
// service that publishes nothing has no such series).
func (r *Runtime) Publisher() *pubsub.Publisher {
	r.publisherOnce.Do(func() {
		r.publisher = pubsub.NewPublisher(r.Sidecar, telemetry.NewPublishes(r.Tel.Registry, events.AllTopics))
	})
	return r.publisher
}

// Store is the state store component name through the sidecar, with
// metrics and tracing. A service calls it once (its metrics register).
func (r *Runtime) Store(name string) *daprstore.Store {
	return daprstore.New(r.Sidecar, name,
		daprstore.WithMetrics(daprstore.NewMetrics(r.Tel.Registry)), daprstore.WithTracer(r.Tel.Tracer("papo/state")))
}

// Close closes the sidecar client, then telemetry.
func (r *Runtime) Close() {
	r.Sidecar.Close()
	r.Tel.Close()
}
