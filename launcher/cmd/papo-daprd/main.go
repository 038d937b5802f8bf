// Command papo-daprd finds the pinned daprd, building it once when none
// is installed (launcher/daprd), and prints its path.
//
// `make run` starts it in the background before it compiles the launcher:
// on a new machine the daprd build is the longest part of the first run,
// and it need not wait for the launcher's own build. The launcher then
// waits for the same build lock and finds the binary in the cache. The
// command imports nothing but the standard library and the daprd package,
// so it compiles in seconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/papochat/papo/launcher/daprd"
)

func main() {
	// Signal.Notify also undoes the SIGINT that a shell ignores for a
	// background job, so Ctrl-C on `make run` stops this build too.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "papo-daprd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("papo-daprd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "the papo repository (holds tools/daprd)")
	quiet := fs.Bool("quiet", false, "print nothing when a daprd needs no build")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, err := os.Stat(filepath.Join(*root, "tools", "daprd", "go.mod")); err != nil {
		return fmt.Errorf("-root %s is not the papo repository: %w", *root, err)
	}
	path, err := daprd.Installed(ctx)
	if err != nil {
		return err
	}
	built := path == ""
	if built {
		if path, err = daprd.Build(ctx, *root, stdout); err != nil {
			return err
		}
	}
	if built || !*quiet {
		fmt.Fprintln(stdout, "papo: daprd", daprd.Version, "at", path)
	}
	return nil
}
