package cmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations on the trust bundle ConfigMap.
const (
	// AckAnnotationPrefix + node holds the fingerprint of the bundle the node's agent has installed.
	AckAnnotationPrefix = "node.trust.connected-registry.io/"
	// BundleFingerprintAnnotation is the fingerprint of the bundle's ca.crt.
	BundleFingerprintAnnotation = "trust.connected-registry.io/fingerprint"
	// BundleKey is the key of the CA bundle in the ConfigMap.
	BundleKey = "ca.crt"
)

// BundleFingerprint names a CA bundle in acknowledgements: the first 16 hex digits of its SHA-256.
func BundleFingerprint(bundle []byte) string {
	s := sha256.Sum256(bundle)
	return hex.EncodeToString(s[:])[:16]
}

// AckAnnotation is the annotation key an agent acknowledges a bundle under; long node names are hashed to fit.
func AckAnnotation(node string) string {
	if len(node) <= 63 {
		return AckAnnotationPrefix + node
	}
	s := sha256.Sum256([]byte(node))
	return AckAnnotationPrefix + node[:46] + "-" + hex.EncodeToString(s[:])[:16]
}

// TLSReloaderOptions runs next to the registry, in the same pod with a shared process namespace. Distribution
// reads its certificate only when it starts, so the reloader
//   - publishes the CA of the registry's TLS Secret to the trust bundle ConfigMap as soon as the Secret changes
//     (the nodes' agents read it from there, without access to the Secret);
//   - and, when the certificate mounted into the pod differs from the one the registry serves, waits until every
//     node's agent has acknowledged a bundle holding the new certificate's CA, then stops the registry process
//     with SIGTERM; the kubelet starts it again at once, with the new certificate.
type TLSReloaderOptions struct {
	KubeOptions
	// Secret is the registry's kubernetes.io/tls Secret.
	Secret string
	// Bundle is the ConfigMap receiving the CA bundle; the chart renders it empty.
	Bundle string
	// DaemonSet is the trust agent's DaemonSet, whose nodes must acknowledge a new CA; empty waits for nobody.
	DaemonSet string
	// CertFile is the registry's certificate as mounted into this pod.
	CertFile string
	// Addr is where the registry serves TLS inside the pod.
	Addr string
	// Process is the base name of the registry's executable.
	Process string
	// Restart is false for a registry that reloads its certificate itself: only the bundle is published.
	Restart bool
	// Interval between two looks.
	Interval time.Duration
	// TrustWait bounds how long a new certificate waits for the nodes' acknowledgements.
	TrustWait time.Duration
	// Proc is the proc filesystem; tests point it elsewhere.
	Proc string
	// Signal stops a process; tests replace it.
	Signal func(pid int) error

	pendingSince time.Time
	signalled    time.Time
}

// AddFlags registers the flags.
func (o *TLSReloaderOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "TLS_RELOADER")
	const p = "CONNECTED_REGISTRY_TLS_RELOADER_"
	fs.StringVar(&o.Secret, "secret", p+"SECRET", "", "the registry's kubernetes.io/tls Secret (required)")
	fs.StringVar(&o.Bundle, "bundle-configmap", p+"BUNDLE_CONFIGMAP", "", "the ConfigMap receiving the CA bundle as ca.crt (required)")
	fs.StringVar(&o.DaemonSet, "daemonset", p+"DAEMONSET", "", "the trust agent's DaemonSet; empty when trust distribution is off")
	fs.StringVar(&o.CertFile, "cert-file", p+"CERT_FILE", "/etc/connected-registry/tls/tls.crt", "the registry's certificate as mounted into the pod")
	fs.StringVar(&o.Addr, "addr", p+"ADDR", "127.0.0.1:5443", "where the registry serves TLS in the pod")
	fs.StringVar(&o.Process, "process", p+"PROCESS", "registry", "base name of the registry's executable, which gets SIGTERM")
	fs.BoolVar(&o.Restart, "restart", p+"RESTART", true, "restart the registry on a new certificate; false only publishes the CA bundle")
	fs.DurationVar(&o.Interval, "interval", p+"INTERVAL", 2*time.Second, "how often to compare the Secret, the mount and what is served")
	fs.DurationVar(&o.TrustWait, "trust-wait", p+"TRUST_WAIT", 5*time.Minute,
		"how long a certificate from a new CA waits for every node to trust that CA before it is served anyway")
	o.Proc = "/proc"
}

// Complete checks the flags.
func (o *TLSReloaderOptions) Complete() error {
	if o.Secret == "" || o.Bundle == "" {
		return usageErrorf("--secret and --bundle-configmap are required")
	}
	if o.Interval <= 0 {
		return usageErrorf("--interval %s must be positive", o.Interval)
	}
	if o.Signal == nil {
		o.Signal = func(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return o.KubeOptions.complete("tls-reloader")
}

// Run loops until ctx ends.
func (o *TLSReloaderOptions) Run(ctx context.Context, out io.Writer) error {
	fmt.Fprintf(out, "tls-reloader: publishing the CA of Secret %s to ConfigMap %s; reloading %q when %s changes\n",
		o.Secret, o.Bundle, o.Process, o.CertFile)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		if err := o.PublishBundle(ctx); err != nil {
			o.log.Warn("publishing the CA bundle", "err", err)
		}
		if !o.Restart {
			// Only the bundle.
		} else if msg, err := o.Reload(ctx); err != nil {
			o.log.Warn("reloading the registry's certificate", "err", err)
		} else if msg != "" {
			fmt.Fprintln(out, "tls-reloader: "+msg)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PublishBundle copies ca.crt of the TLS Secret into the bundle ConfigMap when it differs.
func (o *TLSReloaderOptions) PublishBundle(ctx context.Context) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	s, err := o.Client.CoreV1().Secrets(o.Namespace).Get(ctx, o.Secret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", o.Secret, err)
	}
	ca := s.Data[BundleKey]
	if len(ca) == 0 {
		return fmt.Errorf("secret %s has no %s: the nodes cannot be given a CA", o.Secret, BundleKey)
	}
	cm, err := o.Client.CoreV1().ConfigMaps(o.Namespace).Get(ctx, o.Bundle, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading ConfigMap %s: %w", o.Bundle, err)
	}
	if cm.Data[BundleKey] == string(ca) {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[BundleKey] = string(ca)
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[BundleFingerprintAnnotation] = BundleFingerprint(ca)
	if _, err := o.Client.CoreV1().ConfigMaps(o.Namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating ConfigMap %s: %w", o.Bundle, err)
	}
	o.log.Info("published the CA bundle", "configmap", o.Bundle, "fingerprint", BundleFingerprint(ca))
	return nil
}

// Reload compares the mounted certificate with the served one and, when they differ and the nodes trust the new
// one's CA, stops the registry so it starts with the new one. It returns what it did, or "".
func (o *TLSReloaderOptions) Reload(ctx context.Context) (string, error) {
	mounted, err := readLeaf(o.CertFile)
	if err != nil {
		return "", err
	}
	served, err := o.served()
	if err != nil {
		// Not serving (yet, or restarting): nothing to compare.
		return "", nil
	}
	if bytes.Equal(mounted.Raw, served.Raw) {
		o.pendingSince, o.signalled = time.Time{}, time.Time{}
		return "", nil
	}
	now := o.Clock.Now()
	if !o.signalled.IsZero() && now.Sub(o.signalled) < time.Minute {
		return "", nil // the registry is restarting
	}
	if o.pendingSince.IsZero() {
		o.pendingSince = now
	}
	if ok, why := o.trusted(ctx, mounted); !ok {
		if now.Sub(o.pendingSince) < o.TrustWait {
			return "", fmt.Errorf("new certificate (serial %s) waits: %s", mounted.SerialNumber, why)
		}
		o.log.Warn("serving the new certificate although not every node trusts its CA", "waited", o.TrustWait, "why", why)
	}
	pids, err := o.findProcess()
	if err != nil {
		return "", err
	}
	for _, pid := range pids {
		if err := o.Signal(pid); err != nil {
			return "", fmt.Errorf("stopping %s (pid %d): %w", o.Process, pid, err)
		}
	}
	o.signalled = now
	return fmt.Sprintf("the mounted certificate (serial %s, expires %s) differs from the served one (serial %s): stopped %s (pid %v) so it restarts with it",
		mounted.SerialNumber, mounted.NotAfter.Format(time.RFC3339), served.SerialNumber, o.Process, pids), nil
}

// trusted tells whether every node of the trust agent's DaemonSet has acknowledged a bundle that verifies leaf.
func (o *TLSReloaderOptions) trusted(ctx context.Context, leaf *x509.Certificate) (bool, string) {
	if o.DaemonSet == "" {
		return true, ""
	}
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	cm, err := o.Client.CoreV1().ConfigMaps(o.Namespace).Get(ctx, o.Bundle, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Sprintf("reading ConfigMap %s: %v", o.Bundle, err)
	}
	bundle := []byte(cm.Data[BundleKey])
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return false, "the bundle holds no CA yet"
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: leaf.NotBefore.Add(time.Second)}); err != nil {
		return false, fmt.Sprintf("the published bundle does not verify it yet: %v", err)
	}
	ds, err := o.Client.AppsV1().DaemonSets(o.Namespace).Get(ctx, o.DaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, ""
	}
	if err != nil {
		return false, fmt.Sprintf("reading DaemonSet %s: %v", o.DaemonSet, err)
	}
	fp := BundleFingerprint(bundle)
	acked := 0
	for k, v := range cm.Annotations {
		if strings.HasPrefix(k, AckAnnotationPrefix) && v == fp {
			acked++
		}
	}
	if want := int(ds.Status.DesiredNumberScheduled); acked < want {
		return false, fmt.Sprintf("%d of %d nodes trust CA bundle %s", acked, want, fp)
	}
	return true, ""
}

func (o *TLSReloaderOptions) served() (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", o.Addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate only
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate served")
	}
	return certs[0], nil
}

// findProcess lists the pids whose executable's base name is Process, in the pod's shared process namespace.
func (o *TLSReloaderOptions) findProcess() ([]int, error) {
	entries, err := os.ReadDir(o.Proc)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(o.Proc, e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0]) == o.Process {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no %q process in the pod: the pod needs shareProcessNamespace: true", o.Process)
	}
	return pids, nil
}

func readLeaf(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// ackBundle records on the bundle ConfigMap that node has installed the bundle with fingerprint fp.
func ackBundle(ctx context.Context, k *KubeOptions, configMap, node, fp string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AckAnnotation(node), fp)
	_, err := k.Client.CoreV1().ConfigMaps(k.Namespace).Patch(ctx, configMap, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// readBundle reads the CA bundle from the ConfigMap.
func readBundle(ctx context.Context, k *KubeOptions, configMap string) ([]byte, error) {
	cm, err := k.Client.CoreV1().ConfigMaps(k.Namespace).Get(ctx, configMap, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if cm.Data[BundleKey] == "" {
		return nil, fmt.Errorf("ConfigMap %s has no %s yet: the registry pod publishes it when it starts", configMap, BundleKey)
	}
	return []byte(cm.Data[BundleKey]), nil
}
