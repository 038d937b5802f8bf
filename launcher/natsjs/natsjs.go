// Package natsjs runs the NATS JetStream server embedded in the launcher
// for the local profile, and creates the streams the Dapr components need:
// the jetstream pub/sub component never creates them itself.
package natsjs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns *server.Server
}

// Start starts a server on 127.0.0.1:port keeping its data under dir.
func Start(port int, dir string) (*Server, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "papo-local",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("configure embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats did not start on 127.0.0.1:%d", port)
	}
	return &Server{ns: ns}, nil
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Stop shuts the server down.
func (s *Server) Stop() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// StreamName is the stream that holds a topic: JetStream names cannot
// contain dots.
func StreamName(topic string) string {
	return "papo_" + strings.NewReplacer(".", "_", "*", "_", ">", "_").Replace(topic)
}

// EnsureStreams creates (or updates) one stream per topic on the server at
// url. One stream per topic keeps durable consumer names per topic, so an
// app-id may consume several topics through one component.
func EnsureStreams(ctx context.Context, url string, topics []string, maxAge time.Duration) error {
	nc, err := nats.Connect(url, nats.Name("papo-launcher"))
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, topic := range topics {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:      StreamName(topic),
			Subjects:  []string{topic},
			Storage:   jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy,
			MaxAge:    maxAge,
			Discard:   jetstream.DiscardOld,
		})
		if err != nil {
			return fmt.Errorf("create stream for %s: %w", topic, err)
		}
	}
	return nil
}
