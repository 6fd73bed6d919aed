// Package preflight checks a release's values against the cluster before Helm installs or upgrades anything: a
// chain of named checks, each with a one-line verdict (ok, warn or fail) that names the value and the fix.
// Every check runs, so one install attempt shows every problem; within a check, the first failure ends it.
//
// The checks read the API server through kubernetes.Interface with least privilege: named Secrets and
// Services, the cluster's ServiceCIDRs, IPAddresses, StorageClasses and Nodes, and API discovery.
package preflight

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/clock"
	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

// Status is a check's verdict; the same as the TLS checks'.
type Status = tlscheck.Status

// Verdicts.
const (
	OK   = tlscheck.OK
	Warn = tlscheck.Warn
	Fail = tlscheck.Fail
)

// TLS sources, as the chart's cr.tlsSource names them.
const (
	SourceSecret      = "secret"
	SourceBYOC        = "byoc"
	SourceCertManager = "cert-manager"
	SourceGenerated   = "generated"
)

// Keys of the hook Secret in which the chart hands over values that must not appear in the Job's spec.
const (
	InputConnectionString = "connectionString"
	InputTLSCrt           = "tls.crt"
	InputTLSKey           = "tls.key"
	InputTLSCACrt         = "tls.cacrt"
)

// listPage is how many objects the checks read per list request; larger lists are read a page at a time.
const listPage = 500

// TrustNodeLabel is the label trustDistribution.useNodeSelector selects nodes by.
const TrustNodeLabel = "containerd-configured-by=connected-registry"

// Config is what the chart tells the checks about the release.
type Config struct {
	Namespace string
	// Upgrade is true for helm upgrade: the release's own objects then exist and do not count against it.
	Upgrade bool
	// Service is the release's Service; PVC its cache claim.
	Service, PVC string
	// InputSecret is the hook Secret holding connectionString and the BYOC values; empty when there are none.
	InputSecret string

	ClusterIP string
	// DNSNames are the Service's names, for the certificate's SANs.
	DNSNames []string

	// TLSSource is secret, byoc, cert-manager or generated; TLSSecret names the Secret of the secret source.
	TLSSource, TLSSecret string
	// KeyAlgorithm and KeySize are tls.keyAlgorithm and tls.keySize, for generated certificates.
	KeyAlgorithm string
	KeySize      int

	CertManagerEnabled, CertManagerInstall bool

	// ParentURL is the parent the registry syncs from (https://host[:port]); empty skips the parent check.
	ParentURL string
	// ParentCredentialsSecret is registry.parent.credentialsSecret; empty uses the connection string's sync token.
	ParentCredentialsSecret string

	StorageClass   string
	StorageRequest string

	// Storage is storage.*: the object store of the cache, when it is not the volume.
	Storage ObjectStore

	TrustDistribution bool
	UseNodeSelector   bool
	// RegistryNodeSelector is registry.nodeSelector as key=value items.
	RegistryNodeSelector []string

	// ClientTokensSecret is clientTokens.secret when clientTokens.enabled, else empty.
	ClientTokensSecret string
	// PullSecretCredentials and PullSecretNamespaces are clientTokens.pullSecret.credentialsSecret and
	// .namespaces.
	PullSecretCredentials string
	PullSecretNamespaces  []string
}

// Result is one check's verdict.
type Result struct {
	Check   string
	Status  Status
	Message string
}

func (r Result) String() string { return fmt.Sprintf("%s: %s: %s", r.Check, r.Status, r.Message) }

func ok(format string, args ...any) (Status, string)   { return OK, fmt.Sprintf(format, args...) }
func warn(format string, args ...any) (Status, string) { return Warn, fmt.Sprintf(format, args...) }
func fail(format string, args ...any) (Status, string) { return Fail, fmt.Sprintf(format, args...) }

// Checker runs the checks against one cluster.
type Checker struct {
	Client kubernetes.Interface
	Config Config
	// Clock judges certificates; nil is the real time.
	Clock clock.Clock
	// Log receives details at debug level and what the checks could not clean up; nil discards them.
	Log *slog.Logger
	// Input holds the values the hook Secret would hand over (its stringData), when the checks run where the
	// values are at hand (`kubectl connected-registry check --pre`); nil reads Config.InputSecret.
	Input map[string]string

	input       *corev1.Secret
	inputErr    error
	inputLoaded bool
}

// check is one named link of the chain.
type check struct {
	name string
	fn   func(ctx context.Context, c *Checker) (Status, string)
}

var checks = []check{
	{"connection-string", checkConnectionString},
	{"parent", checkParent},
	{"cluster-ip", checkClusterIP},
	{"cert-manager", checkCertManager},
	{"tls", checkTLS},
	{"storage-class", checkStorageClass},
	{"object-storage", checkObjectStore},
	{"node-selector", checkNodeSelector},
	{"pod-security", checkPodSecurity},
	{"client-tokens", checkClientTokens},
}

// Names lists the checks in the order they run.
func Names() []string {
	out := make([]string, 0, len(checks))
	for _, c := range checks {
		out = append(out, c.name)
	}
	return out
}

// Run runs every check and returns one verdict per check, in order.
func (c *Checker) Run(ctx context.Context) []Result {
	results := make([]Result, 0, len(checks))
	for _, ch := range checks {
		st, msg := ch.fn(ctx, c)
		results = append(results, Result{Check: ch.name, Status: st, Message: oneLine(msg)})
	}
	return results
}

func (c *Checker) debugf(format string, args ...any) {
	c.log().Debug(fmt.Sprintf(format, args...))
}

func (c *Checker) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c *Checker) now() time.Time { return clock.Or(c.Clock).Now() }

// inputValue returns a key of the hook Secret, reading it once.
func (c *Checker) inputValue(ctx context.Context, key string) (string, bool, error) {
	if c.Input != nil {
		v, found := c.Input[key]
		return v, found, nil
	}
	if c.Config.InputSecret == "" {
		return "", false, nil
	}
	if !c.inputLoaded {
		c.inputLoaded = true
		c.input, c.inputErr = c.Client.CoreV1().Secrets(c.Config.Namespace).Get(ctx, c.Config.InputSecret, metav1.GetOptions{})
		if apierrors.IsNotFound(c.inputErr) {
			c.inputErr = fmt.Errorf("the hook Secret %s/%s that hands the values over is missing (Helm creates it just before this Job): run the install again", c.Config.Namespace, c.Config.InputSecret)
		} else if c.inputErr != nil {
			c.inputErr = fmt.Errorf("reading the hook Secret %s/%s: %w", c.Config.Namespace, c.Config.InputSecret, c.inputErr)
		}
	}
	if c.inputErr != nil {
		return "", false, c.inputErr
	}
	v, found := c.input.Data[key]
	if !found {
		v, found = []byte(c.input.StringData[key]), c.input.StringData[key] != ""
	}
	return string(v), found, nil
}

// oneLine keeps a verdict on its line of output.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// apiMissing reports whether err means the API (group, version or resource) is not served.
func apiMissing(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err)
}
