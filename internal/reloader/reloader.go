// Package reloader is the tls-reloader, a native sidecar of the registry pod that feeds the registry its
// certificate. Distribution reads its certificate only when it starts, and a Secret volume follows a renewed
// Secret only after the kubelet's next sync (a minute or more), so the reloader reads the TLS Secret through the
// API and
//   - publishes the Secret's CA to the trust bundle ConfigMap at once (package trust/bundle: the nodes' agents
//     read it from there, without access to the Secret);
//   - writes tls.crt and tls.key into the in-memory volume the registry reads them from: before the registry
//     starts, and, for a renewed certificate, once every node's agent has acknowledged a bundle that verifies it;
//   - then stops the registry process with SIGTERM, and the kubelet starts it again at once, with the new files.
//
// The pod shares its process namespace, so the reloader finds the registry's process in /proc.
package reloader

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/clock"
	"github.com/connected-registry/connected-registry/internal/trust"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

const (
	// DefaultRequestTimeout bounds each request to the API server when RequestTimeout is not set.
	DefaultRequestTimeout = 30 * time.Second
	// RestartGrace is how long a registry that was stopped may still serve the old certificate before it is
	// stopped again: it is restarting.
	RestartGrace = 30 * time.Second
	// dialTimeout bounds the look at the certificate the registry serves.
	dialTimeout = 2 * time.Second
)

// Reloader keeps the registry's certificate files equal to its TLS Secret. Fill the exported fields, then call
// Run, or Sync for one pass.
type Reloader struct {
	// Client reads the Secret, the bundle ConfigMap and the agents' DaemonSet in Namespace.
	Client    kubernetes.Interface
	Namespace string
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
	// Interval between two passes of Run.
	Interval time.Duration
	// TrustWait bounds how long a certificate from a new CA waits for the nodes' acknowledgements.
	TrustWait time.Duration
	// RequestTimeout bounds each request to the API server; 0 is DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Proc is the proc filesystem; tests point it elsewhere. Empty is /proc.
	Proc string
	// Signal stops a process; nil sends SIGTERM.
	Signal func(pid int) error
	// Clock defaults to the real time.
	Clock clock.Clock
	// Log receives warnings and what was published; nil discards them.
	Log *slog.Logger

	pendingSince time.Time
	pendingCert  []byte
	signalled    time.Time
	started      atomic.Bool
}

// Started tells whether the registry may start: TLSDir holds a certificate (or there is no TLSDir and the first
// pass is done).
func (r *Reloader) Started() bool { return r.started.Load() }

// StartedHandler serves /started for the sidecar's startup probe: 200 once Started, 503 before.
func (r *Reloader) StartedHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/started", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Started() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "waiting for Secret %s\n", r.Secret)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Run makes a pass every Interval until ctx ends, printing what it did to out. An error is logged once, not at
// every pass, while it stays the same (a renewal that waits says so once).
func (r *Reloader) Run(ctx context.Context, out io.Writer) error {
	fmt.Fprintf(out, "tls-reloader: Secret %s -> ConfigMap %s (CA bundle) and %s (certificate of %q)\n",
		r.Secret, r.Bundle, r.TLSDir, r.Process)
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	var lastErr string
	for {
		msg, err := r.Sync(ctx)
		switch {
		case err != nil && err.Error() != lastErr:
			r.log().Warn("tls-reloader", "err", err)
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
func (r *Reloader) Sync(ctx context.Context) (string, error) {
	rctx, cancel := r.request(ctx)
	s, err := r.Client.CoreV1().Secrets(r.Namespace).Get(rctx, r.Secret, metav1.GetOptions{})
	cancel()
	if err != nil {
		return "", fmt.Errorf("reading Secret %s: %w", r.Secret, err)
	}
	// A bundle that cannot be published does not keep the registry from starting or renewing: without a new CA
	// in the bundle, a renewal from a new CA waits anyway.
	pubErr := r.PublishBundle(ctx, s.Data[bundle.Key])
	if r.TLSDir == "" {
		r.started.Store(true)
		return "", pubErr
	}
	msg, err := r.Reload(ctx, s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	return msg, errors.Join(pubErr, err)
}

// PublishBundle copies ca into the bundle ConfigMap when it differs.
func (r *Reloader) PublishBundle(ctx context.Context, ca []byte) error {
	if len(ca) == 0 {
		return fmt.Errorf("secret %s has no %s: the nodes cannot be given a CA", r.Secret, bundle.Key)
	}
	ctx, cancel := r.request(ctx)
	defer cancel()
	changed, err := r.bundle().Publish(ctx, ca)
	if changed {
		r.log().Info("published the CA bundle", "configmap", r.Bundle, "fingerprint", bundle.Fingerprint(ca))
	}
	return err
}

// Reload writes the Secret's certificate and key for the registry, right away before it first starts, and for
// a renewed certificate once the nodes trust its CA; then it stops the registry so it starts with them. It
// returns what it did, or "".
func (r *Reloader) Reload(ctx context.Context, certPEM, keyPEM []byte) (string, error) {
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", r.Secret, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return "", fmt.Errorf("secret %s: tls.crt and tls.key do not make a key pair: %w", r.Secret, err)
	}
	certFile, keyFile := filepath.Join(r.TLSDir, corev1.TLSCertKey), filepath.Join(r.TLSDir, corev1.TLSPrivateKeyKey)
	written, _ := os.ReadFile(certFile)
	writtenKey, _ := os.ReadFile(keyFile)
	var msg string
	now := clock.Or(r.Clock).Now()
	switch {
	case len(written) == 0:
		// Before the registry's first start: nothing is served that the nodes could lose.
		if err := write(certFile, keyFile, certPEM, keyPEM); err != nil {
			return "", err
		}
		r.started.Store(true)
		return fmt.Sprintf("wrote the certificate (serial %s, expires %s) for the registry's start", leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339)), nil
	case !bytes.Equal(written, certPEM) || !bytes.Equal(writtenKey, keyPEM):
		// The wait belongs to this certificate: another one that replaces it in the Secret waits afresh.
		if r.pendingSince.IsZero() || !bytes.Equal(r.pendingCert, certPEM) {
			r.pendingSince, r.pendingCert = now, certPEM
		}
		if ok, why := r.trusted(ctx, leaf, now); !ok {
			if now.Sub(r.pendingSince) < r.TrustWait {
				return "", fmt.Errorf("renewed certificate (serial %s) waits: %s", leaf.SerialNumber, why)
			}
			r.log().Warn("serving the renewed certificate although not every node trusts its CA", "waited", r.TrustWait, "err", why)
		}
		if err := write(certFile, keyFile, certPEM, keyPEM); err != nil {
			return "", err
		}
		r.pendingSince, r.pendingCert, r.signalled = time.Time{}, nil, time.Time{}
		msg = fmt.Sprintf("wrote the renewed certificate (serial %s, expires %s)", leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
	default:
		// The Secret holds what is written: nothing waits.
		r.pendingSince, r.pendingCert = time.Time{}, nil
	}
	r.started.Store(true)
	// The registry serves what it read when it started; restart it when that is not what is written.
	served, err := r.served()
	if err != nil || served.SerialNumber.Cmp(leaf.SerialNumber) == 0 && bytes.Equal(served.Raw, leaf.Raw) {
		return msg, nil // not serving (starting or restarting), or up to date
	}
	if !r.signalled.IsZero() && now.Sub(r.signalled) < RestartGrace {
		return msg, nil // the registry is restarting
	}
	pids, err := r.findProcess()
	if err != nil {
		return msg, err
	}
	for _, pid := range pids {
		if err := r.signal(pid); err != nil {
			return msg, fmt.Errorf("stopping %s (pid %d): %w", r.Process, pid, err)
		}
	}
	r.signalled = now
	return strings.TrimPrefix(fmt.Sprintf("%s; stopped %s (pid %v), which served serial %s, so it starts again with serial %s",
		msg, r.Process, pids, served.SerialNumber, leaf.SerialNumber), "; "), nil
}

func write(certFile, keyFile string, certPEM, keyPEM []byte) error {
	// The key first: a registry starting in between finds the old pair or a mismatch it refuses, never serves
	// a half-written file.
	if err := trust.WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return trust.WriteFileAtomic(certFile, certPEM, 0o644)
}

// trusted tells whether every node of the trust agent's DaemonSet has acknowledged a bundle that verifies leaf;
// when not, why.
func (r *Reloader) trusted(ctx context.Context, leaf *x509.Certificate, now time.Time) (bool, string) {
	if r.DaemonSet == "" {
		return true, ""
	}
	ctx, cancel := r.request(ctx)
	defer cancel()
	published, acked, err := r.bundle().Status(ctx)
	if err != nil {
		return false, err.Error()
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(published) {
		return false, "the bundle holds no CA yet"
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now}); err != nil {
		return false, fmt.Sprintf("the published bundle does not verify it yet: %v", err)
	}
	ds, err := r.Client.AppsV1().DaemonSets(r.Namespace).Get(ctx, r.DaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, ""
	}
	if err != nil {
		return false, fmt.Sprintf("reading DaemonSet %s: %v", r.DaemonSet, err)
	}
	if want := int(ds.Status.DesiredNumberScheduled); acked < want {
		return false, fmt.Sprintf("%d of %d nodes trust CA bundle %s", acked, want, bundle.Fingerprint(published))
	}
	return true, ""
}

// served returns the certificate the registry serves at Addr.
func (r *Reloader) served() (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: dialTimeout}
	conn, err := tls.DialWithDialer(d, "tcp", r.Addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate only
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
func (r *Reloader) findProcess() ([]int, error) {
	proc := r.Proc
	if proc == "" {
		proc = "/proc"
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0]) == r.Process {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no %q process in the pod: the pod needs shareProcessNamespace: true", r.Process)
	}
	return pids, nil
}

func (r *Reloader) signal(pid int) error {
	if r.Signal != nil {
		return r.Signal(pid)
	}
	return syscall.Kill(pid, syscall.SIGTERM)
}

func (r *Reloader) bundle() bundle.ConfigMap {
	return bundle.ConfigMap{Client: r.Client, Namespace: r.Namespace, Name: r.Bundle}
}

func (r *Reloader) request(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.RequestTimeout <= 0 {
		return context.WithTimeout(ctx, DefaultRequestTimeout)
	}
	return context.WithTimeout(ctx, r.RequestTimeout)
}

func (r *Reloader) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("tls.crt holds no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
