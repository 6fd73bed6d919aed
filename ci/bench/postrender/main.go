// Command postrender benchmarks the kustomize post-renderer side by side with bare krusty (the same
// sigs.k8s.io/kustomize/api version, on identical in-memory input) and the kustomize v5.8.2 CLI, on the chart's
// output with the example site overlay and on synthetic inputs with strategic-merge and JSON 6902 patches, and
// writes a Markdown table with the ratios and the cold-start cost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.LookupEnv)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench/postrender:", err)
		os.Exit(1)
	}
}
