// Command connected-registry-postrender is the chart's kustomize post-renderer: it reads the chart's output on
// standard input and writes it with the overlay applied on standard output. Helm 3 runs it with
// --post-renderer; Helm 4 runs it as the postrenderer/v1 plugin in postrender/plugin.
package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		os.Exit(1)
	}
}
