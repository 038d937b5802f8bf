// Package service holds what every papo command's main does: run the
// service until SIGINT or SIGTERM, and exit non-zero with the service's
// name and the error when it fails.
package service

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Run is a service's body: it serves until ctx is done, logging to stdout.
type Run func(ctx context.Context, stdout io.Writer) error

// Main runs run until the process is told to stop, then exits: 0 when run
// returned nil, 1 after printing "name: error" to stderr otherwise.
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Exec(ctx, name, run, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exec runs run with ctx and returns the exit code Main exits with.
func Exec(ctx context.Context, name string, run Run, stdout, stderr io.Writer) int {
	if err := run(ctx, stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
