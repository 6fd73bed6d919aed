package app

import (
	"context"
	"io"
	"os"

	"github.com/connected-registry/connected-registry/internal/preflight"
)

// DefaultTerminationLog is where Kubernetes reads a container's termination message.
const DefaultTerminationLog = "/dev/termination-log"

// PreflightOptions checks the release's values against the cluster before install or upgrade (package
// preflight). It prints one line per check, writes the failures and warnings to the termination log, and fails
// when a check fails.
type PreflightOptions struct {
	KubeOptions
	// Config is filled by the flags; Namespace comes from KubeOptions.
	Config preflight.Config
	// TerminationLog receives the summary; empty skips it.
	TerminationLog string
}

// AddFlags registers the flags; the chart's preflight Job passes them as args.
func (o *PreflightOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "PREFLIGHT", jobTimeoutHelp)
	preflight.AddFlags(fs, &o.Config)
	fs.StringVar(&o.TerminationLog, "termination-log", "CONNECTED_REGISTRY_PREFLIGHT_TERMINATION_LOG", DefaultTerminationLog,
		"file for the summary Kubernetes shows as the container's termination message; empty writes none")
}

// Complete validates the options and builds the API client.
func (o *PreflightOptions) Complete() error {
	c := &o.Config
	if c.Service == "" {
		return usageErrorf("--service is required: the release's registry Service, like cr-connected-registry")
	}
	if c.ClusterIP == "" {
		return usageErrorf("--cluster-ip is required: service.clusterIP")
	}
	switch c.TLSSource {
	case preflight.SourceSecret:
		if c.TLSSecret == "" {
			return usageErrorf("--tls-source=secret needs --tls-secret: tls.secret")
		}
	case preflight.SourceBYOC:
		if c.InputSecret == "" {
			return usageErrorf("--tls-source=byoc needs --input-secret: the hook Secret with tls.crt and tls.key")
		}
	case preflight.SourceCertManager, preflight.SourceGenerated:
	default:
		return usageErrorf("--tls-source %q is not secret, byoc, cert-manager or generated", c.TLSSource)
	}
	return o.complete()
}

// Run runs every check, prints one line each, writes the termination log, and returns preflight.ErrChecksFailed
// when one fails.
func (o *PreflightOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	cfg := o.Config
	cfg.Namespace = o.Namespace
	checker := &preflight.Checker{Client: o.Client, Config: cfg, Log: o.Log}
	msg, err := checker.Report(ctx, out)
	if o.TerminationLog != "" {
		if werr := os.WriteFile(o.TerminationLog, []byte(msg), 0o644); werr != nil {
			o.Log.Debug("cannot write the termination log", "path", o.TerminationLog, errKey, werr)
		}
	}
	return err
}
