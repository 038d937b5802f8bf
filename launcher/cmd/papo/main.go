// Command papo runs a whole papo stack on this machine: `make run`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/papochat/papo/launcher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "papo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("papo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", or(getenv("PROFILE"), "local"), "components/<profile>/ to run on (env PROFILE)")
	addr := fs.String("addr", or(getenv("PAPO_ADDR"), "127.0.0.1:8080"), "gateway listen address (env PAPO_ADDR)")
	dataDir := fs.String("data", getenv("PAPO_DATA_DIR"), "data dir (env PAPO_DATA_DIR; default .data/<profile>)")
	binDir := fs.String("bin", "", "build the services into this dir (default <data>/bin; make run uses bin/, where it built them)")
	replicas := fs.Int("ws-replicas", 2, "number of ws replicas")
	daprLog := fs.String("daprd-log-level", or(getenv("PAPO_DAPRD_LOG_LEVEL"), "warn"), "daprd log level")
	redisDB := fs.Int("redis-db", atoi(getenv("PAPO_REDIS_DB")), "Redis database for Redis profiles (env PAPO_REDIS_DB)")
	pprof := fs.Bool("pprof", getenv("PAPO_PPROF") == "1", "serve Go's pprof on every app's metrics port (env PAPO_PPROF=1)")
	useTLS := fs.Bool("tls", getenv("PAPO_TLS") == "1", "serve HTTPS and WSS only, with a local CA made once in the data dir (env PAPO_TLS=1; make run TLS=1)")
	redirect := fs.String("http-redirect", getenv("PAPO_HTTP_REDIRECT"), "with -tls, also listen for plain HTTP here and only redirect it to HTTPS, e.g. 127.0.0.1:8080 (env PAPO_HTTP_REDIRECT)")
	procs := fs.Int("gomaxprocs", atoi(getenv("PAPO_GOMAXPROCS")), "GOMAXPROCS of every sidecar and every service but auth and ws: 0 one per four cores (at least one), -1 Go's default (env PAPO_GOMAXPROCS; a GOMAXPROCS in the environment reaches every process unchanged)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := launcher.FindRoot(".")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "papo: starting profile %q (Ctrl-C stops everything)\n", *profile)
	stack, err := launcher.Start(ctx, launcher.Options{
		Root:             root,
		Profile:          *profile,
		DataDir:          *dataDir,
		BinDir:           *binDir,
		GatewayAddr:      *addr,
		WSReplicas:       *replicas,
		Log:              stdout,
		Progress:         stdout,
		Alerts:           stderr,
		DaprdLogLevel:    *daprLog,
		RedisDB:          *redisDB,
		PushURL:          getenv("PAPO_PUSH_URL"),
		Pprof:            *pprof,
		TLS:              *useTLS,
		HTTPRedirectAddr: *redirect,
		GoMaxProcs:       *procs,
		// Dapr's own spans join the apps' when an OTLP/HTTP endpoint is set.
		TraceEndpoint: getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "papo: %s\n", stack.MetricsSummary())
	if stack.TLS != nil {
		fmt.Fprint(stdout, "\n"+stack.TLS.TrustHelp(stack.GatewayURL))
	}
	fmt.Fprintf(stdout, "\npapo: ready — open %s\n\n", stack.GatewayURL)
	<-ctx.Done()
	fmt.Fprintln(stdout, "papo: stopping")
	stack.Stop()
	fmt.Fprintln(stdout, "papo: stopped")
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
