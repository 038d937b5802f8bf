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

// Stream limits. Topics that only announce what is durable elsewhere
// (room events and signals are in the state store or ephemeral, revoked
// sessions in auth's store, device notices in the notification store) are
// kept in memory for a short while: a consumer that falls further behind
// catches up from the store, not the broker. Measured with file storage
// at 1,000 msgs/s, every fan-out consumer re-read and re-indexed the
// stream's 8 MB file blocks from disk, the largest part of the broker's
// CPU (docs/benchmarks.md). The queues of work still to do
// (messages.submitted, the dead letters) stay on disk with the longer
// maxAge the caller gives.
const (
	announceMaxAge   = 15 * time.Minute
	announceMaxBytes = 256 << 20
)

// inMemory lists the topics whose streams are kept in memory.
var inMemory = map[string]bool{
	"room.events": true, "room.signals": true, "sessions.revoked": true, "devices.changed": true,
}

// StreamConfig is the stream papo uses for topic; maxAge bounds the
// streams kept on disk.
func StreamConfig(topic string, maxAge time.Duration) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:      StreamName(topic),
		Subjects:  []string{topic},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		MaxAge:    maxAge,
		Discard:   jetstream.DiscardOld,
	}
	if inMemory[topic] {
		cfg.Storage, cfg.MaxAge, cfg.MaxBytes = jetstream.MemoryStorage, announceMaxAge, announceMaxBytes
	}
	return cfg
}

// EnsureStreams creates (or updates) one stream per topic on the server at
// url. One stream per topic keeps durable consumer names per topic, so an
// app-id may consume several topics through one component. A stream made
// before with another storage is made again (a stream's storage cannot be
// changed): it is called before any sidecar consumes, and what it held is
// either announcements of what is durable elsewhere or, for a queue moved
// to disk, kept (only memory-kept streams are dropped).
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
		cfg := StreamConfig(topic, maxAge)
		if old, err := js.Stream(ctx, cfg.Name); err == nil && old.CachedInfo().Config.Storage != cfg.Storage && inMemory[topic] {
			if err := js.DeleteStream(ctx, cfg.Name); err != nil {
				return fmt.Errorf("remake stream for %s in memory: %w", topic, err)
			}
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create stream for %s: %w", topic, err)
		}
	}
	return nil
}
