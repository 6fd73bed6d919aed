// Command valuesdoc generates the chart's strict values.schema.json from the comments of values.yaml (`# @schema`
// keywords above each key's helm-docs `# --` description, and a flat twin of every nested leaf), or with -check
// verifies that it is up to date. helm-docs writes the chart's README from the same comments.
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "valuesdoc:", err)
		os.Exit(1)
	}
}
