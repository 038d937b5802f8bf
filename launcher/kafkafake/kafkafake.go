// Package kafkafake runs the Kafka broker of the kafka-postgres profile:
// tools/kafkafake (franz-go's kfake, one broker on a loopback port), built
// from its own module outside go.work and started as a process of the
// stack, with its data in the stack's data dir.
//
// It is a process, not a library in the launcher, so that kfake's
// dependencies (klauspost/compress v1.20.3 among them) never enter the
// workspace's build list, which every service is built with.
package kafkafake

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/papochat/papo/launcher/procs"
)

// Build compiles tools/kafkafake (under root) into dst.
func Build(ctx context.Context, root, dst string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, ".")
	cmd.Dir = filepath.Join(root, "tools", "kafkafake")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build tools/kafkafake: %w\n%s", err, out)
	}
	return nil
}

// Options say how to start the broker.
type Options struct {
	// Bin is the binary Build made.
	Bin string
	// Port is its port on 127.0.0.1.
	Port int
	// DataDir keeps topics, records and committed offsets across
	// restarts; empty keeps them in memory.
	DataDir string
	// Topics are created at start, each with its retention.
	Topics map[string]time.Duration
	// Partitions of every topic; default 4.
	Partitions int
	// Log receives the broker's output, each line prefixed with its name.
	Log io.Writer
}

// Server is a running broker.
type Server struct {
	addr string
	proc *procs.Proc
}

// Start starts the broker and returns once it serves, its topics made.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Partitions <= 0 {
		opts.Partitions = 4
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	args := []string{"-port", strconv.Itoa(opts.Port), "-partitions", strconv.Itoa(opts.Partitions)}
	if opts.DataDir != "" {
		args = append(args, "-data-dir", opts.DataDir)
	}
	names := make([]string, 0, len(opts.Topics))
	for name := range opts.Topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "-topic", name+"="+opts.Topics[name].String())
	}
	p, err := procs.Start(procs.Spec{Name: "kafka", Path: opts.Bin, Args: args}, opts.Log, len("kafka"))
	if err != nil {
		return nil, err
	}
	s := &Server{addr: "127.0.0.1:" + strconv.Itoa(opts.Port), proc: p}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !serving(p.Tail()) {
		if p.Exited() {
			return nil, fmt.Errorf("kafka broker exited (%v):\n  %s", p.Err(), strings.Join(p.Tail(), "\n  "))
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("kafka broker not serving on %s: %w\n  %s", s.addr, ctx.Err(), strings.Join(p.Tail(), "\n  "))
		case <-t.C:
		}
	}
	return s, nil
}

func serving(lines []string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, "kafkafake: serving on") {
			return true
		}
	}
	return false
}

// Addr is the broker's host:port, as the Kafka component's brokers.
func (s *Server) Addr() string { return s.addr }

// Pid is the broker process's id.
func (s *Server) Pid() int { return s.proc.Pid() }

// Stop stops the broker, which writes what it holds to its data dir
// first; after 10 s it is killed.
func (s *Server) Stop() { s.proc.Stop(10 * time.Second) }
