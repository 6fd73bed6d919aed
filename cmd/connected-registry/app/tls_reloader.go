package app

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
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/connected-registry/connected-registry/internal/trust"
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

// TLSReloaderOptions runs as the registry pod's sidecar, with a shared process namespace. Distribution reads its
// certificate only when it starts, and a Secret volume follows a renewed Secret only after the kubelet's next sync
// (a minute or more), so the reloader feeds the registry itself: it reads the TLS Secret through the API and
//   - publishes the Secret's CA to the trust bundle ConfigMap at once (the nodes' agents read it from there,
//     without access to the Secret);
//   - writes tls.crt and tls.key into the in-memory volume the registry reads them from: before the registry
//     starts, and, for a renewed certificate, once every node's agent has acknowledged a bundle that verifies it;
//   - then stops the registry process with SIGTERM, and the kubelet starts it again at once, with the new files.
type TLSReloaderOptions struct {
	KubeOptions
	// Secret is the registry's kubernetes.io/tls Secret.
	Secret string
	// Bundle is the ConfigMap receiving the CA bundle; the chart renders it empty.
	Bundle string
	// DaemonSet is the trust agent's DaemonSet, whose nodes must acknowledge a new CA; empty waits for nobody.
	DaemonSet string
	// TLSDir receives tls.crt and tls.key for the registry; empty only publishes the bundle.
	TLSDir string
	// Addr is where the registry serves TLS inside the pod.
	Addr string
	// Process is the base name of the registry's executable.
	Process string
	// HealthAddr serves /started (200 once TLSDir holds a certificate) for the sidecar's startup probe.
	HealthAddr string
	// Interval between two looks.
	Interval time.Duration
	// TrustWait bounds how long a certificate from a new CA waits for the nodes' acknowledgements.
	TrustWait time.Duration
	// Proc is the proc filesystem; tests point it elsewhere.
	Proc string
	// Signal stops a process; tests replace it.
	Signal func(pid int) error

	pendingSince time.Time
	pendingCert  []byte
	signalled    time.Time
	started      atomic.Bool
}

// AddFlags registers the flags.
func (o *TLSReloaderOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "TLS_RELOADER")
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
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return o.KubeOptions.complete("tls-reloader")
}

// Run loops until ctx ends.
func (o *TLSReloaderOptions) Run(ctx context.Context, out io.Writer) error {
	if o.HealthAddr != "" {
		ln, err := net.Listen("tcp", o.HealthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr %s: %w", o.HealthAddr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/started", func(w http.ResponseWriter, _ *http.Request) {
			if !o.started.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "waiting for Secret %s\n", o.Secret)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	fmt.Fprintf(out, "tls-reloader: Secret %s -> ConfigMap %s (CA bundle) and %s (certificate of %q)\n",
		o.Secret, o.Bundle, o.TLSDir, o.Process)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	var lastErr string
	for {
		msg, err := o.Sync(ctx)
		switch {
		case err != nil && err.Error() != lastErr:
			// A waiting renewal says so once, not every interval.
			o.log.Warn("tls-reloader", "err", err)
		case msg != "":
			fmt.Fprintln(out, "tls-reloader: "+msg)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync makes one pass: read the Secret, publish its CA, and bring the registry's certificate up to date.
func (o *TLSReloaderOptions) Sync(ctx context.Context) (string, error) {
	rctx, cancel := o.withTimeout(ctx)
	s, err := o.Client.CoreV1().Secrets(o.Namespace).Get(rctx, o.Secret, metav1.GetOptions{})
	cancel()
	if err != nil {
		return "", fmt.Errorf("reading Secret %s: %w", o.Secret, err)
	}
	// A bundle that cannot be published does not keep the registry from starting or renewing: without a new CA
	// in the bundle, a renewal from a new CA waits anyway.
	pubErr := o.PublishBundle(ctx, s.Data[BundleKey])
	if o.TLSDir == "" {
		o.started.Store(true)
		return "", pubErr
	}
	msg, err := o.Reload(ctx, s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	return msg, errors.Join(pubErr, err)
}

// PublishBundle copies ca into the bundle ConfigMap when it differs.
func (o *TLSReloaderOptions) PublishBundle(ctx context.Context, ca []byte) error {
	if len(ca) == 0 {
		return fmt.Errorf("secret %s has no %s: the nodes cannot be given a CA", o.Secret, BundleKey)
	}
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
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

// Reload writes the Secret's certificate and key for the registry, right away before it first starts, and for
// a renewed certificate once the nodes trust its CA; then it stops the registry so it starts with them. It
// returns what it did, or "".
func (o *TLSReloaderOptions) Reload(ctx context.Context, certPEM, keyPEM []byte) (string, error) {
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", o.Secret, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return "", fmt.Errorf("secret %s: tls.crt and tls.key do not make a key pair: %w", o.Secret, err)
	}
	certFile, keyFile := filepath.Join(o.TLSDir, corev1.TLSCertKey), filepath.Join(o.TLSDir, corev1.TLSPrivateKeyKey)
	written, _ := os.ReadFile(certFile)
	writtenKey, _ := os.ReadFile(keyFile)
	var msg string
	now := o.Clock.Now()
	switch {
	case len(written) == 0:
		// Before the registry's first start: nothing is served that the nodes could lose.
		if err := o.write(certFile, keyFile, certPEM, keyPEM); err != nil {
			return "", err
		}
		o.started.Store(true)
		return fmt.Sprintf("wrote the certificate (serial %s, expires %s) for the registry's start", leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339)), nil
	case !bytes.Equal(written, certPEM) || !bytes.Equal(writtenKey, keyPEM):
		// The wait belongs to this certificate: another one that replaces it in the Secret waits afresh.
		if o.pendingSince.IsZero() || !bytes.Equal(o.pendingCert, certPEM) {
			o.pendingSince, o.pendingCert = now, certPEM
		}
		if ok, why := o.trusted(ctx, leaf); !ok {
			if now.Sub(o.pendingSince) < o.TrustWait {
				return "", fmt.Errorf("renewed certificate (serial %s) waits: %s", leaf.SerialNumber, why)
			}
			o.log.Warn("serving the renewed certificate although not every node trusts its CA", "waited", o.TrustWait, "why", why)
		}
		if err := o.write(certFile, keyFile, certPEM, keyPEM); err != nil {
			return "", err
		}
		o.pendingSince, o.pendingCert, o.signalled = time.Time{}, nil, time.Time{}
		msg = fmt.Sprintf("wrote the renewed certificate (serial %s, expires %s)", leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
	default:
		// The Secret holds what is written: nothing waits.
		o.pendingSince, o.pendingCert = time.Time{}, nil
	}
	o.started.Store(true)
	// The registry serves what it read when it started; restart it when that is not what is written.
	served, err := o.served()
	if err != nil || served.SerialNumber.Cmp(leaf.SerialNumber) == 0 && bytes.Equal(served.Raw, leaf.Raw) {
		return msg, nil // not serving (starting or restarting), or up to date
	}
	if !o.signalled.IsZero() && now.Sub(o.signalled) < 30*time.Second {
		return msg, nil // the registry is restarting
	}
	pids, err := o.findProcess()
	if err != nil {
		return msg, err
	}
	for _, pid := range pids {
		if err := o.Signal(pid); err != nil {
			return msg, fmt.Errorf("stopping %s (pid %d): %w", o.Process, pid, err)
		}
	}
	o.signalled = now
	return strings.TrimPrefix(fmt.Sprintf("%s; stopped %s (pid %v), which served serial %s, so it starts again with serial %s",
		msg, o.Process, pids, served.SerialNumber, leaf.SerialNumber), "; "), nil
}

func (o *TLSReloaderOptions) write(certFile, keyFile string, certPEM, keyPEM []byte) error {
	// The key first: a registry starting in between finds the old pair or a mismatch it refuses, never serves
	// a half-written file.
	if err := trust.WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return trust.WriteFileAtomic(certFile, certPEM, 0o644)
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
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: o.Clock.Now()}); err != nil {
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

func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("tls.crt holds no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ackBundle records on the bundle ConfigMap that node has installed the bundle with fingerprint fp.
func ackBundle(ctx context.Context, k *KubeOptions, configMap, node, fp string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AckAnnotation(node), fp)
	_, err := k.Client.CoreV1().ConfigMaps(k.Namespace).Patch(ctx, configMap, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// readBundle reads the CA bundle from the ConfigMap, and the acknowledgement of node found there.
func readBundle(ctx context.Context, k *KubeOptions, configMap, node string) (bundle []byte, acked string, err error) {
	cm, err := k.Client.CoreV1().ConfigMaps(k.Namespace).Get(ctx, configMap, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	if cm.Data[BundleKey] == "" {
		return nil, "", fmt.Errorf("ConfigMap %s has no %s yet: the registry pod publishes it when it starts", configMap, BundleKey)
	}
	return []byte(cm.Data[BundleKey]), cm.Annotations[AckAnnotation(node)], nil
}
