package app

import (
	"context"
	"io"
	"time"

	"github.com/connected-registry/connected-registry/internal/reloader"
)

// TLSReloaderOptions runs the tls-reloader, the registry pod's native sidecar that publishes the registry's CA to
// the trust bundle and restarts the registry on a renewed certificate (package reloader).
type TLSReloaderOptions struct {
	KubeOptions
	// Secret is the registry's kubernetes.io/tls Secret; Bundle the trust bundle ConfigMap.
	Secret, Bundle string
	// DaemonSet is the trust agent's DaemonSet; empty waits for nobody.
	DaemonSet string
	// TLSDir receives tls.crt and tls.key for the registry; empty only publishes the bundle.
	TLSDir string
	// Addr is where the registry serves TLS in the pod; Process the base name of its executable.
	Addr, Process string
	// HealthAddr serves /started for the sidecar's startup probe.
	HealthAddr string
	// Interval between two passes; TrustWait bounds the wait of a certificate from a new CA for the nodes.
	Interval, TrustWait time.Duration
	// Proc is the proc filesystem, and Signal stops a process; tests replace them.
	Proc   string
	Signal func(pid int) error
}

// AddFlags registers the flags.
func (o *TLSReloaderOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "TLS_RELOADER", requestTimeoutHelp)
	const p = "CONNECTED_REGISTRY_TLS_RELOADER_"
	fs.StringVar(&o.Secret, "secret", p+"SECRET", "", "the registry's kubernetes.io/tls Secret (required)")
	fs.StringVar(&o.Bundle, "bundle-configmap", p+"BUNDLE_CONFIGMAP", "", "the ConfigMap receiving the CA bundle as ca.crt (required)")
	fs.StringVar(&o.DaemonSet, "daemonset", p+"DAEMONSET", "", "the trust agent's DaemonSet; empty when trust distribution is off")
	fs.StringVar(&o.TLSDir, "tls-dir", p+"TLS_DIR", "", "directory receiving tls.crt and tls.key for the registry; empty only publishes the CA bundle")
	fs.StringVar(&o.Addr, "addr", p+"ADDR", "127.0.0.1:5443", "where the registry serves TLS in the pod")
	fs.StringVar(&o.Process, "process", p+"PROCESS", "registry", "base name of the registry's executable, which gets SIGTERM")
	fs.StringVar(&o.HealthAddr, "health-addr", p+"HEALTH_ADDR", ":8082", "address of /started for the startup probe; empty serves none")
	fs.DurationVar(&o.Interval, "interval", p+"INTERVAL", 2*time.Second, "how often to read the Secret and compare it with what is served")
	fs.DurationVar(&o.TrustWait, "trust-wait", p+"TRUST_WAIT", 5*time.Minute,
		"how long a certificate from a new CA waits for every node to trust that CA before it is served anyway")
}

// Complete checks the flags and builds the API client.
func (o *TLSReloaderOptions) Complete() error {
	if o.Secret == "" || o.Bundle == "" {
		return usageErrorf("--secret and --bundle-configmap are required")
	}
	if o.Interval <= 0 {
		return usageErrorf("--interval %s must be positive", o.Interval)
	}
	if o.Timeout <= 0 {
		o.Timeout = reloader.DefaultRequestTimeout
	}
	return o.complete()
}

// Run serves /started and keeps the registry's certificate up to date until ctx ends.
func (o *TLSReloaderOptions) Run(ctx context.Context, out io.Writer) error {
	r := &reloader.Reloader{
		Client: o.Client, Namespace: o.Namespace, Secret: o.Secret, Bundle: o.Bundle, DaemonSet: o.DaemonSet,
		TLSDir: o.TLSDir, Addr: o.Addr, Process: o.Process, Interval: o.Interval, TrustWait: o.TrustWait,
		RequestTimeout: o.Timeout, Proc: o.Proc, Signal: o.Signal, Log: o.Log,
	}
	stop, err := serveHealth(o.HealthAddr, r.StartedHandler())
	if err != nil {
		return err
	}
	defer stop()
	return r.Run(ctx, out)
}
