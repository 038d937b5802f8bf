// Command presence keeps who is online: ws replicas report connections and
// heartbeat their live sets, presence stores them with TTLs in the
// presencestore state store, answers GET /api/v1/presence and announces
// online/offline transitions on the fan-out topic.
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
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(1)
	}
}
