// Command k8sschema writes standalone, strict JSON schemas of the Kubernetes v1.37 and cert-manager v1.21 kinds,
// converted from k8s.io/kubernetes' OpenAPI document and cert-manager's CRDs, for kubeconform to validate rendered
// manifests offline.
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
		fmt.Fprintln(os.Stderr, "k8sschema:", err)
		os.Exit(1)
	}
}
