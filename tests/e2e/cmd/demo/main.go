// Command demo is `make demo`: it builds everything, starts the embedded single-node cluster and a parent
// registry, installs the chart with the most default scenario that runs offline, pulls an image through the
// connected registry with the node's containerd, and prints a short report. The release and the cluster stay
// up for you to look at; the parent stops with the command, as at a disconnected site.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout, log io.Writer) error {
	start := time.Now()
	env, err := framework.Setup(ctx, log)
	if err != nil {
		return err
	}
	setup := time.Since(start)
	const ns, release = "connected-registry", "connected-registry"
	// The default scenario needs cert-manager's controller, which cannot be obtained offline; bring-your-own
	// certificate with the cluster providing trust is the most default scenario the demo can run for real.
	site, err := env.PrepareBYOCSite(ctx, ns, release, true)
	if err != nil {
		return err
	}
	helm := framework.CLIInstaller("helm3")
	installStart := time.Now()
	if err := helm.Install(ctx, env, release, ns, []string{site.ValuesFile}); err != nil {
		env.Dump(ctx, ns)
		return err
	}
	installed := time.Since(installStart)
	out, pull, err := env.PullThrough(ctx, ns)
	if err != nil {
		env.Dump(ctx, ns)
		return err
	}
	helmBin := filepath.Join(env.Root, "bin", "helm3")
	fmt.Fprintf(stdout, `
connected-registry demo
  cluster:        single-node Kubernetes v1.37.2 (tests/cluster), set up in %s
  parent:         Distribution v3.1.2 with htpasswd and TLS at https://%s (seeded with %s)
  installed:      release %q in namespace %q with %s, Ready in %s
  TLS source:     bring your own certificate (tls.crt/tls.key/tls.cacrt from protected settings %s)
  trust:          cluster-provided (the node's %s/%s)
  pull:           pod image %s/%s pulled through the connected registry and ran in %s: %q

Use the cluster:
  export KUBECONFIG=%s
  kubectl -n %s get all
  %s -n %s status %s
Stop it:
  %s -n %s uninstall %s && sudo bash ci/cluster.sh down
`, setup.Round(time.Second), env.Parent.Host, framework.HelloImage, release, ns, helm.Name(), installed.Round(100*time.Millisecond),
		site.ValuesFile, framework.CertsDir, framework.RegistryHost, framework.RegistryHost, framework.HelloImage,
		pull.Round(100*time.Millisecond), strings.TrimSpace(out), env.Kubeconfig, ns, helmBin, ns, release, helmBin, ns, release)
	env.Parent.Stop()
	fmt.Fprintf(stdout, "\nThe parent registry has stopped with this command: the site is now disconnected, and the connected\nregistry keeps serving %s/%s from its cache.\n", framework.RegistryHost, framework.HelloImage)
	return nil
}
