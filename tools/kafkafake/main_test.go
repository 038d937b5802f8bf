package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMain lets a test start this very binary as the broker, so that it
// can kill -9 a real process: KAFKAFAKE_SERVE holds its arguments.
func TestMain(m *testing.M) {
	if args := os.Getenv("KAFKAFAKE_SERVE"); args != "" {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		if err := run(ctx, strings.Fields(args), os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "kafkafake:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func TestFlagsRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no port", nil, "-port 0"},
		{"port out of range", []string{"-port", "70000"}, "-port 70000"},
		{"no partitions", []string{"-port", "1", "-partitions", "0"}, "-partitions 0"},
		{"topic without retention", []string{"-port", "1", "-topic", "room.events"}, "want name=retention"},
		{"retention below a minute", []string{"-port", "1", "-topic", "room.events=5s"}, "at least 1m"},
		{"offsets retention below a minute", []string{"-port", "1", "-offsets-retention", "10s"}, "at least 1m"},
		{"unknown log level", []string{"-port", "1", "-log-level", "loud"}, "-log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parse(%q) = %v, want an error naming %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestTopicsAreCreatedWithTheirRetention: every -topic exists at start
// with the partitions and retention it was given, and a restart on the
// same data dir with another retention changes the topic's.
func TestTopicsAreCreatedWithTheirRetention(t *testing.T) {
	dir := t.TempDir()
	addr := serveInProcess(t, "-data-dir", dir, "-partitions", "3", "-topic", "room.events=15m", "-topic", "messages.submitted=24h")
	checkTopics(t, addr, 3, map[string]string{"room.events": "900000", "messages.submitted": "86400000"})
}

// TestRestartAfterKillNineKeepsRecordsAndOffsets measures what kfake's
// DataDir keeps when the broker process dies by SIGKILL: every record it
// acknowledged, the committed offsets of a group, the topics with their
// retention, and the partition each key maps to.
func TestRestartAfterKillNineKeepsRecordsAndOffsets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	dir := t.TempDir()
	args := []string{"-data-dir", dir, "-topic", "messages.submitted=24h"}
	addr, kill := serveProcess(t, args...)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := client(t, addr, kgo.ConsumerGroup("message"), kgo.ConsumeTopics("messages.submitted"),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	const n = 200
	before := map[string]int32{} // key -> partition
	for i := range n {
		key := fmt.Sprintf("room-%d", i%7)
		r := cl.ProduceSync(ctx, &kgo.Record{Topic: "messages.submitted", Key: []byte(key), Value: []byte(strconv.Itoa(i))})
		if err := r.FirstErr(); err != nil {
			t.Fatal(err)
		}
		before[key] = r[0].Record.Partition
	}
	// The group consumes and commits half of the records.
	consumed := 0
	for consumed < n/2 {
		fs := cl.PollRecords(ctx, n/2-consumed)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if err := cl.CommitRecords(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		consumed += len(recs)
	}
	committed := committedOffsets(t, cl, "message")
	cl.Close()

	kill()
	addr, _ = serveProcess(t, args...)
	checkTopics(t, addr, 4, map[string]string{"messages.submitted": "86400000"})
	after := client(t, addr)
	if got := committedOffsets(t, after, "message"); !equalOffsets(got, committed) {
		t.Fatalf("committed offsets after the restart %v, before %v", got, committed)
	}
	// Every record is still there, once, and each key in its partition.
	reader := client(t, addr, kgo.ConsumeTopics("messages.submitted"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	for len(seen) < n {
		fs := reader.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read after restart (%d of %d): %v", len(seen), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if seen[string(r.Value)] {
				t.Errorf("record %s read twice", r.Value)
			}
			seen[string(r.Value)] = true
			if p := before[string(r.Key)]; p != r.Partition {
				t.Errorf("key %s in partition %d after the restart, %d before", r.Key, r.Partition, p)
			}
		})
	}
}

func checkTopics(t *testing.T, addr string, partitions int, retention map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, addr))
	for topic, want := range retention {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(details[topic].Partitions); got != partitions {
			t.Errorf("%s has %d partitions, want %d", topic, got, partitions)
		}
		cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := cfgs.On(topic, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" {
				got = c.MaybeValue()
			}
		}
		if got != want {
			t.Errorf("%s retention.ms = %q, want %q", topic, got, want)
		}
	}
}

func committedOffsets(t *testing.T, cl *kgo.Client, group string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) { out[o.Partition] = o.At })
	if len(out) == 0 {
		t.Fatalf("group %s has no committed offsets", group)
	}
	return out
}

func equalOffsets(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for p, o := range a {
		if b[p] != o {
			return false
		}
	}
	return true
}

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// serveInProcess runs the broker in this process until the test ends.
func serveInProcess(t *testing.T, args ...string) string {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &syncBuffer{}
	go func() { done <- run(ctx, append([]string{"-port", strconv.Itoa(port)}, args...), out, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitServing(t, out, done)
	return "127.0.0.1:" + strconv.Itoa(port)
}

// serveProcess starts this test binary as the broker and returns its
// address and a function that kills it with SIGKILL.
func serveProcess(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KAFKAFAKE_SERVE="+strings.Join(append([]string{"-port", strconv.Itoa(port)}, args...), " "))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	t.Cleanup(kill)
	waitServing(t, out, done)
	return "127.0.0.1:" + strconv.Itoa(port), kill
}

func waitServing(t *testing.T, out *syncBuffer, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "kafkafake: serving on") {
		select {
		case err := <-done:
			t.Fatalf("broker exited before serving (%v): %s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker not serving within 20s: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
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

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
