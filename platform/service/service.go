// Package service holds what every papo command's main does: run the
// service with the process environment until SIGINT or SIGTERM, and exit
// non-zero with the service's name and the error when it fails; and the
// head every service's run shares (Run: read the configuration, build
// the Runtime, serve, close).
package service

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/papochat/papo/platform/settings"
)

// RunFunc is a service's run: it reads its configuration through getenv
// (settings.Load), serves until ctx is done, and logs to stdout. Tests
// call it with their own getenv (settings.Env), so they need not touch
// the process environment and may run in parallel.
type RunFunc func(ctx context.Context, getenv settings.Getenv, stdout io.Writer) error

// Main runs run until the process is told to stop, then exits: 0 when run
// returned nil, 1 after printing "name: error" to stderr otherwise.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Exec(ctx, name, run, os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exec runs run with ctx and returns the exit code Main exits with.
func Exec(ctx context.Context, name string, run RunFunc, getenv settings.Getenv, stdout, stderr io.Writer) int {
	if err := run(ctx, getenv, stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
