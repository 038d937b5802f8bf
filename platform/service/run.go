package service

import (
	"context"
	"fmt"
	"io"

	"github.com/papochat/papo/platform/settings"
)

// Serve is what is a service's own in its run: given the Runtime and the
// configuration read, it builds the service and serves until ctx is
// done, shutting down what it started before it returns.
type Serve[C any] func(ctx context.Context, rt *Runtime, cfg C) error

// Run is the head every service's run shares: it reads the configuration
// (Load), builds the Runtime (Start) of the service name, calls serve
// and, when serve returns, closes the Runtime. A configuration that does
// not load is an error starting "config: ".
func Run[C settings.Embedder](ctx context.Context, getenv settings.Getenv, stdout io.Writer, name string, defaults C, serve Serve[C]) error {
	cfg, err := Load(getenv, defaults)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	rt, err := Start(cfg.Settings(), name, stdout)
	if err != nil {
		return err
	}
	defer rt.Close()
	return serve(ctx, rt, cfg)
}

// Load reads a service's configuration: defaults (the service's own
// port, and any value its `default` tags cannot give) filled from getenv
// and checked by settings.Load.
func Load[C settings.Embedder](getenv settings.Getenv, defaults C) (C, error) {
	cfg := defaults
	err := settings.Load(getenv, &cfg)
	return cfg, err
}
