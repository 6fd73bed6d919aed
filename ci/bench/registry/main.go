// Command registry-bench measures the registry data plane: pulls through the connected registry, as the chart
// configures it, against a raw TLS file server (the ceiling) and direct pulls from the parent, cold and warm,
// concurrent, and while the parent is down. Every process is a real Distribution v3.1.2 registry or Go TLS
// server on 127.0.0.1.
//
//	go run ./ci/bench/registry [--runs 5] [--out _out/bench/registry.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "registry-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, out, errOut io.Writer) error {
	if handled, err := runRole(); handled {
		return err
	}
	var o Options
	fs := flag.NewFlagSet("registry-bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() { fmt.Fprint(errOut, usage); fs.PrintDefaults() }
	o.BindFlags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("no arguments expected, got %q", fs.Args())
	}
	o.log = errOut
	if err := o.Complete(); err != nil {
		return err
	}
	return o.Run(ctx, out)
}
