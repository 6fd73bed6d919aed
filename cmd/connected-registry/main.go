// Command hooks is the in-cluster binary of connected-registry. Run as `hooks <command>`, or, when its name
// starts with docker-credential-, as the registry's Docker credential helper for the parent registry.
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
	err := run(ctx, os.Args)
	stop()
	if code := app.ExitCode(err); code != 0 {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(code)
	}
}

func run(ctx context.Context, args []string) error {
	return app.Execute(ctx, args, app.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.LookupEnv)
}
