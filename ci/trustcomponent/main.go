// Command trustcomponent generates kustomize/components/trust-distribution/on/trust-agent.yaml from the chart:
// it renders the chart with trust distribution on and sentinel values, keeps every object labelled
// app.kubernetes.io/component=trust-agent, and replaces the sentinels with the placeholders the post-renderer
// fills from the chart's output (--trust-distribution=on). With -check it fails when the file is out of date.
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
		fmt.Fprintln(os.Stderr, "trustcomponent:", err)
		os.Exit(1)
	}
}
