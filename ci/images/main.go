// Command images builds the project's container images without Docker (the in-cluster binary, the Distribution
// registry and the end-to-end tests' workload) as multi-platform OCI layout tarballs for
// `ctr -n k8s.io images import --all-platforms`, and pushes them to any registry.
//
//	go run ./ci/images build [--out _out/images] [--platforms linux/amd64,linux/arm64] [--only connected-registry,...]
//	go run ./ci/images push --registry HOST:PORT [--ca FILE] [--username U --password P] [--rename FROM=TO]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}
