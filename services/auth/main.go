// Command auth runs papo's auth service: accounts, password login,
// sessions with rotating refresh tokens, and the Ed25519 keys that sign
// access tokens (published as a JWKS). See docs/auth.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}
