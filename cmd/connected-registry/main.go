// Command connected-registry is the in-cluster binary of connected-registry: the pre-install checks, certificate
// generation, the registry pod's tls-reloader, parent gate and credential helper, the node trust agent, the
// post-delete cleanup and the scheduled pre-sync. Run it as `connected-registry <command>`, or, under a name that
// starts with docker-credential-, as the registry's Docker credential helper for the parent registry. The commands
// are wired in package app.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Execute(ctx, os.Args, app.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.LookupEnv)
	stop()
	if code := app.ExitCode(err); code != 0 {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(code)
	}
}
