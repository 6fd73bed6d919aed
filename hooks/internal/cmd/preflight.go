package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/hooks/internal/preflight"
)

// DefaultTerminationLog is where Kubernetes reads a container's termination message.
const DefaultTerminationLog = "/dev/termination-log"

// maxTerminationMessage is the size Kubernetes keeps of a termination message.
const maxTerminationMessage = 4096

// ErrChecksFailed is returned when at least one check fails; the binary then exits 1.
var ErrChecksFailed = errors.New("preflight checks failed")

// PreflightOptions checks the release's values against the cluster before install or upgrade. It prints one
// line per check, `name: ok|warn|fail: message`, writes the failures and warnings to the termination log, and
// fails when a check fails.
type PreflightOptions struct {
	KubeOptions
	// Config is filled by the flags; Namespace comes from KubeOptions.
	Config preflight.Config
	// TerminationLog receives the summary; empty skips it.
	TerminationLog string
}

// AddFlags registers the flags; the chart's preflight Job passes them as args.
func (o *PreflightOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "PREFLIGHT")
	const p = "CONNECTED_REGISTRY_PREFLIGHT_"
	c := &o.Config
	fs.BoolVar(&c.Upgrade, "upgrade", p+"UPGRADE", false,
		"the release is being upgraded: its own Service and claim exist and do not count against it")
	fs.StringVar(&c.Service, "service", p+"SERVICE", "", "name of the release's registry Service (required)")
	fs.StringVar(&c.PVC, "pvc", p+"PVC", "", "name of the release's cache PersistentVolumeClaim")
	fs.StringVar(&c.InputSecret, "input-secret", p+"INPUT_SECRET", "",
		"hook Secret holding connectionString, tls.crt, tls.key and tls.cacrt as the values give them; empty when none is given")
	fs.StringVar(&c.ClusterIP, "cluster-ip", p+"CLUSTER_IP", "", "service.clusterIP (required)")
	fs.ListVar(&c.DNSNames, "dns", p+"DNS", nil, "the Service's DNS names, comma-separated, which the certificate should hold")
	fs.StringVar(&c.TLSSource, "tls-source", p+"TLS_SOURCE", preflight.SourceCertManager,
		"where the certificate comes from: secret (tls.secret), byoc (tls.crt), cert-manager or generated")
	fs.StringVar(&c.TLSSecret, "tls-secret", p+"TLS_SECRET", "", "tls.secret: the existing kubernetes.io/tls Secret, for --tls-source=secret")
	fs.StringVar(&c.KeyAlgorithm, "key-algorithm", p+"KEY_ALGORITHM", "ECDSA", "tls.keyAlgorithm, for --tls-source=generated")
	fs.IntVar(&c.KeySize, "key-size", p+"KEY_SIZE", 256, "tls.keySize in bits, for --tls-source=generated")
	fs.BoolVar(&c.CertManagerEnabled, "cert-manager-enabled", p+"CERT_MANAGER_ENABLED", false, "cert-manager.enabled")
	fs.BoolVar(&c.CertManagerInstall, "cert-manager-install", p+"CERT_MANAGER_INSTALL", false, "cert-manager.install")
	fs.StringVar(&c.ParentURL, "parent-url", p+"PARENT_URL", "",
		"the parent registry's URL: the check authenticates to it as the registry will; empty skips the check")
	fs.StringVar(&c.ParentCredentialsSecret, "parent-credentials-secret", p+"PARENT_CREDENTIALS_SECRET", "",
		"registry.parent.credentialsSecret, whose username and password the registry uses instead of the connection string's sync token")
	fs.StringVar(&c.StorageClass, "storage-class", p+"STORAGE_CLASS", "", "pvc.storageClassName; empty means the cluster's default class")
	fs.StringVar(&c.StorageRequest, "storage-request", p+"STORAGE_REQUEST", "", "pvc.storageRequest, like 500Gi")
	fs.BoolVar(&c.TrustDistribution, "trust-distribution", p+"TRUST_DISTRIBUTION", true, "trustDistribution.enabled")
	fs.BoolVar(&c.UseNodeSelector, "use-node-selector", p+"USE_NODE_SELECTOR", false,
		"trustDistribution.useNodeSelector: trust goes only to nodes labelled "+preflight.TrustNodeLabel)
	fs.ListVar(&c.RegistryNodeSelector, "registry-node-selector", p+"REGISTRY_NODE_SELECTOR", nil,
		"registry.nodeSelector as key=value items, comma-separated")
	fs.StringVar(&o.TerminationLog, "termination-log", p+"TERMINATION_LOG", DefaultTerminationLog,
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
	return o.complete("preflight")
}

// Run runs every check, prints one line each, and returns ErrChecksFailed when one fails.
func (o *PreflightOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	cfg := o.Config
	cfg.Namespace = o.Namespace
	checker := &preflight.Checker{
		Client: o.Client, Config: cfg, Clock: o.Clock,
		Debugf: func(format string, args ...any) { o.log.Debug(fmt.Sprintf(format, args...)) },
	}
	results := checker.Run(ctx)
	o.deleteInput(ctx)
	var failed, warned []string
	var problems []string
	for _, r := range results {
		fmt.Fprintln(out, r.String())
		switch r.Status {
		case preflight.Fail:
			failed = append(failed, r.Check)
			problems = append(problems, r.String())
		case preflight.Warn:
			warned = append(warned, r.Check)
			problems = append(problems, r.String())
		}
	}
	summary := fmt.Sprintf("preflight: %d checks passed", len(results))
	switch {
	case len(failed) > 0:
		summary = fmt.Sprintf("preflight: %d of %d checks failed (%s)", len(failed), len(results), strings.Join(failed, ", "))
	case len(warned) > 0:
		summary = fmt.Sprintf("preflight: %d checks passed, %d with a warning (%s)", len(results), len(warned), strings.Join(warned, ", "))
	}
	o.writeTerminationLog(summary, problems)
	if len(failed) > 0 {
		return fmt.Errorf("%w: %d of %d (%s); the lines above name each value and its fix", ErrChecksFailed, len(failed), len(results), strings.Join(failed, ", "))
	}
	return nil
}

// deleteInput deletes the hook Secret that handed the values over, once read, whatever the verdict: Helm deletes a
// hook only when every hook of the phase succeeded, and a failed install must not leave a private key behind.
func (o *PreflightOptions) deleteInput(ctx context.Context) {
	name := o.Config.InputSecret
	if name == "" {
		return
	}
	err := o.Client.CoreV1().Secrets(o.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		o.log.Warn("cannot delete the hook Secret that handed the values over; Helm deletes it on the next install", "secret", name, "error", err)
	}
}

// writeTerminationLog writes the summary and the problems, cut to what Kubernetes keeps, at a line end.
func (o *PreflightOptions) writeTerminationLog(summary string, problems []string) {
	if o.TerminationLog == "" {
		return
	}
	msg := summary + "\n"
	for _, p := range problems {
		if len(msg)+len(p)+1 > maxTerminationMessage {
			const more = "…\n"
			if len(msg)+len(more) <= maxTerminationMessage {
				msg += more
			}
			break
		}
		msg += p + "\n"
	}
	if err := os.WriteFile(o.TerminationLog, []byte(msg), 0o644); err != nil {
		o.log.Debug("cannot write the termination log", "path", o.TerminationLog, "error", err)
	}
}
