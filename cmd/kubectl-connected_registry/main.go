// Command kubectl-connected_registry is the workstation binary of connected-registry, a kubectl plugin:
// `kubectl connected-registry check --pre` before an install, `kubectl connected-registry check` after it. It
// reads values as Helm does, so it links the Helm SDK; the in-cluster binary does not. The commands are wired in
// package app.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/connected-registry/connected-registry/cmd/kubectl-connected_registry/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Execute(ctx, os.Args, app.Streams{Out: os.Stdout, Err: os.Stderr}, os.LookupEnv)
	stop()
	if code := app.ExitCode(err); code != 0 {
		if !app.Reported(err) {
			fmt.Fprintf(os.Stderr, "kubectl connected-registry: %v\n", err)
		}
		os.Exit(code)
	}
}
