package natsjs

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/papochat/papo/platform/events"
)

// TestStreamsKeepQueuesOnDiskAndAnnouncementsInMemory: every topic gets
// its stream; the queues of work (messages.submitted, dead letters) are
// kept on disk, the announcements in memory with bounded age and size;
// and a stream an older launcher made on disk for an announcement topic
// is made again in memory.
func TestStreamsKeepQueuesOnDiskAndAnnouncementsInMemory(t *testing.T) {
	srv, err := Start(freePort(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// As an older launcher left it.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamName(events.TopicRoomEvents),
		Subjects: []string{events.TopicRoomEvents}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStreams(ctx, srv.URL(), events.AllTopics, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, topic := range events.AllTopics {
		s, err := js.Stream(ctx, StreamName(topic))
		if err != nil {
			t.Fatalf("stream of %s: %v", topic, err)
		}
		cfg := s.CachedInfo().Config
		wantMemory := topic != events.TopicSubmitted && topic != events.TopicDeadLetter && topic != events.TopicNotificationsDeadLetter
		switch {
		case wantMemory && (cfg.Storage != jetstream.MemoryStorage || cfg.MaxAge != announceMaxAge || cfg.MaxBytes != announceMaxBytes):
			t.Errorf("%s: storage %v, max age %v, max bytes %d; want memory, %v, %d", topic, cfg.Storage, cfg.MaxAge, cfg.MaxBytes, announceMaxAge, announceMaxBytes)
		case !wantMemory && (cfg.Storage != jetstream.FileStorage || cfg.MaxAge != 24*time.Hour):
			t.Errorf("%s: storage %v, max age %v; want file, 24h", topic, cfg.Storage, cfg.MaxAge)
		}
	}
	// Idempotent: a second launcher start changes nothing.
	if err := EnsureStreams(ctx, srv.URL(), events.AllTopics, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
