package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/connected-registry/connected-registry/internal/reloader"
)

// RegistryProbeCommand is the registry container's liveness probe.
const RegistryProbeCommand = "registry-probe"

// RegistryProbeOptions is the registry container's liveness probe (reloader.Probe): the kubelet runs it in the
// registry container, through the link the credential-helper init container installs, and restarts the registry
// when it fails.
type RegistryProbeOptions struct {
	// TLSDir holds the certificate the tls-reloader wrote; Addr is where the registry serves TLS.
	TLSDir, Addr string
	// State is the probe's file in a writable volume of the registry container.
	State string
	// HangAfter is how long the registry may leave the probe unanswered; Timeout bounds one look.
	HangAfter, Timeout time.Duration
}

// AddFlags registers the flags.
func (o *RegistryProbeOptions) AddFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_PROBE_"
	fs.StringVar(&o.TLSDir, "tls-dir", p+"TLS_DIR", "/etc/connected-registry/tls", "directory holding the tls.crt the tls-reloader wrote for the registry")
	fs.StringVar(&o.Addr, "addr", p+"ADDR", "127.0.0.1:5443", "where the registry serves TLS in the pod")
	fs.StringVar(&o.State, "state", p+"STATE", "/tmp/connected-registry-probe", "file in a writable volume where the probe keeps when the registry last answered")
	fs.DurationVar(&o.HangAfter, "hang-after", p+"HANG_AFTER", reloader.DefaultHangAfter,
		"how long the registry may leave the probe unanswered before the probe fails and the kubelet restarts it")
	fs.DurationVar(&o.Timeout, "timeout", p+"TIMEOUT", reloader.DefaultProbeTimeout, "how long one look at the registry may take")
}

// Complete checks the flags.
func (o *RegistryProbeOptions) Complete() error {
	if o.TLSDir == "" || o.Addr == "" || o.State == "" {
		return usageErrorf("--tls-dir, --addr and --state must not be empty")
	}
	if o.HangAfter <= 0 || o.Timeout <= 0 {
		return usageErrorf("--hang-after %s and --timeout %s must be positive", o.HangAfter, o.Timeout)
	}
	return nil
}

// Run looks at the registry once, prints what it saw, and fails when the registry must be restarted.
func (o *RegistryProbeOptions) Run(ctx context.Context, out io.Writer) error {
	p := &reloader.Probe{TLSDir: o.TLSDir, Addr: o.Addr, State: o.State, HangAfter: o.HangAfter, Timeout: o.Timeout}
	msg, err := p.Check(ctx)
	if msg != "" {
		fmt.Fprintln(out, msg)
	}
	return err
}
