// Command papoload drives a running papo through its public gateway with
// WebSocket clients, as docs/protocol.md describes, and prints what it
// measured as JSON: N clients over R rooms, one sender per room on a fixed
// schedule, every member receiving (see package load).
//
//	go run ./bench/cmd/papoload -url http://127.0.0.1:8080 -clients 1000 -rooms 100 -rate 1000 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/papochat/papo/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "papoload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("papoload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg load.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "the gateway's base URL")
	fs.IntVar(&cfg.Clients, "clients", 1000, "WebSocket clients, one user each")
	fs.IntVar(&cfg.Rooms, "rooms", 100, "rooms the clients are spread over")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "messages per second over all rooms")
	fs.DurationVar(&cfg.Warmup, "warmup", 5*time.Second, "schedule run before counting")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured part of the schedule (idle: how long to hold)")
	fs.DurationVar(&cfg.Drain, "drain", 15*time.Second, "how long to wait for the last deliveries")
	fs.IntVar(&cfg.TextBytes, "text-bytes", 64, "size of each message's text")
	fs.IntVar(&cfg.SetupConcurrency, "setup-concurrency", 16, "registrations, joins and dials in flight")
	fs.BoolVar(&cfg.Idle, "idle", false, "only open the sockets and hold them (memory per connection)")
	fs.IntVar(&cfg.ConnsPerUser, "conns-per-user", 1, "sockets per user in -idle mode")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Progress = stderr
	rep, err := load.Run(ctx, cfg)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if encErr := enc.Encode(rep); encErr != nil {
		return encErr
	}
	return err
}
