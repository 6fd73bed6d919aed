// Package reloader is the tls-reloader, a native sidecar of the registry pod that feeds the registry its
// certificate. Distribution reads its certificate only when it starts, and a Secret volume follows a renewed
// Secret only after the kubelet's next sync (a minute or more), so the reloader reads the TLS Secret through the
// API and
//   - publishes the Secret's CA to the trust bundle ConfigMap at once (package trust/bundle: the nodes' agents
//     read it from there, without access to the Secret);
//   - writes tls.crt and tls.key into the in-memory volume the registry reads them from: before the registry
//     starts, and, for a renewed certificate, once every node's agent has acknowledged a bundle that verifies it.
//     A certificate that is expired, not yet valid, lacks the ClusterIP the nodes pull from, or does not chain to
//     the CA the nodes are given, is never written: the registry keeps what it serves, and an Event and a log
//     line say why.
//
// The reloader never touches the registry's process: the pod shares no process namespace, so the registry
// container (a third-party image facing the network) cannot reach the reloader's API token through /proc. The
// registry container's liveness probe (Probe, the registry-probe command) fails once the registry serves
// another certificate than its files hold, and the kubelet starts it again with them.
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
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/clock"
	"github.com/connected-registry/connected-registry/internal/trust"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

const (
	// DefaultRequestTimeout bounds each request to the API server when RequestTimeout is not set.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultSkew is how far in the future a certificate's NotBefore may lie, for clocks that differ a little.
	DefaultSkew = 5 * time.Minute
	// ReasonRefused is the reason of the Event about a certificate the reloader does not install.
	ReasonRefused = "CertificateRefused"
)

// EventSink records an Event about the registry pod.
type EventSink interface {
	Event(ctx context.Context, warning bool, reason, message string)
}

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
	// Release names the agents' acknowledgement Leases (bundle.Acks); empty counts only the acknowledgements
	// earlier releases wrote into the bundle's annotations.
	Release string
	// TLSDir receives tls.crt and tls.key for the registry; empty only publishes the bundle.
	TLSDir string
	// ClusterIP is the address the nodes pull from: a certificate without it is not installed. The zero value
	// skips that check.
	ClusterIP netip.Addr
	// Skew is how far in the future a certificate's NotBefore may lie; 0 is DefaultSkew.
	Skew time.Duration
	// Interval between two passes of Run.
	Interval time.Duration
	// TrustWait bounds how long a certificate from a new CA waits for the nodes' acknowledgements.
	TrustWait time.Duration
	// RequestTimeout bounds each request to the API server; 0 is DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Clock defaults to the real time.
	Clock clock.Clock
	// Log receives warnings and what was published; nil discards them.
	Log *slog.Logger
	// Events receives an Event for each certificate not installed; nil sends none.
	Events EventSink

	pendingSince time.Time
	pendingCert  []byte
	// refused is the last refusal reported, so each is reported once.
	refused string
	started atomic.Bool
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
	fmt.Fprintf(out, "tls-reloader: Secret %s -> ConfigMap %s (CA bundle) and %s (the registry's certificate)\n",
		r.Secret, r.Bundle, r.TLSDir)
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
		err = fmt.Errorf("reading Secret %s: %w", r.Secret, err)
		if r.Started() {
			return "", err
		}
		// The API server is out of reach at the start: a registry with a certificate in its volume (the reloader
		// restarted, the pod's volume kept) starts with it, and serves its cache; nothing else may start it.
		if r.TLSDir == "" {
			r.started.Store(true)
			return "", err
		}
		if leaf, perr := r.previous(); perr == nil {
			r.started.Store(true)
			return fmt.Sprintf("the registry starts with the certificate already written (serial %s, expires %s), since the API server cannot be read",
				leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339)), err
		}
		return "", err
	}
	// A bundle that cannot be published does not keep the registry from starting or renewing: without a new CA
	// in the bundle, a renewal from a new CA waits anyway.
	pubErr := r.PublishBundle(ctx, s.Data[bundle.Key])
	if r.TLSDir == "" {
		r.started.Store(true)
		return "", pubErr
	}
	msg, err := r.Reload(ctx, s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey], s.Data[bundle.Key])
	return msg, errors.Join(pubErr, err)
}

// previous returns the certificate a pair already written into TLSDir holds.
func (r *Reloader) previous() (*x509.Certificate, error) {
	certPEM, err := os.ReadFile(filepath.Join(r.TLSDir, corev1.TLSCertKey))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(r.TLSDir, corev1.TLSPrivateKeyKey))
	if err != nil {
		return nil, err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return parseLeaf(certPEM)
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
// a renewed certificate once the nodes trust its CA. A certificate that could not serve the nodes is never
// written (refusal). It returns what it did, or "". The registry's liveness probe restarts it with new files.
func (r *Reloader) Reload(ctx context.Context, certPEM, keyPEM, caPEM []byte) (string, error) {
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
	now := clock.Or(r.Clock).Now()
	if bytes.Equal(written, certPEM) && bytes.Equal(writtenKey, keyPEM) {
		// The Secret holds what is written: nothing waits.
		r.pendingSince, r.pendingCert, r.refused = time.Time{}, nil, ""
		r.started.Store(true)
		return "", nil
	}
	if why := r.refusal(leaf, certPEM, caPEM, now); why != "" {
		keeps := "the registry keeps serving the certificate it has"
		if len(written) == 0 {
			keeps = "the registry does not start until the Secret holds a certificate it can serve"
		}
		err := fmt.Errorf("secret %s: the certificate (serial %s) is not installed: %s; %s", r.Secret, leaf.SerialNumber, why, keeps)
		if msg := err.Error(); msg != r.refused {
			r.refused = msg
			if r.Events != nil {
				r.Events.Event(ctx, true, ReasonRefused, msg)
			}
		}
		return "", err
	}
	r.refused = ""
	if len(written) == 0 {
		// Before the registry's first start: nothing is served that the nodes could lose.
		if err := write(certFile, keyFile, certPEM, keyPEM); err != nil {
			return "", err
		}
		r.started.Store(true)
		return fmt.Sprintf("wrote the certificate (serial %s, expires %s) for the registry's start", leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339)), nil
	}
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
	r.pendingSince, r.pendingCert = time.Time{}, nil
	r.started.Store(true)
	return fmt.Sprintf("wrote the renewed certificate (serial %s, expires %s); the registry's liveness probe restarts it with the new files",
		leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339)), nil
}

// refusal says why leaf (the first certificate of certPEM) could not serve the nodes, or "": it is expired or not
// yet valid, lacks the ClusterIP they pull from, or does not chain to caPEM, the CA they are given.
func (r *Reloader) refusal(leaf *x509.Certificate, certPEM, caPEM []byte, now time.Time) string {
	skew := r.Skew
	if skew <= 0 {
		skew = DefaultSkew
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("it expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Add(skew).Before(leaf.NotBefore):
		return fmt.Sprintf("it is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if r.ClusterIP.IsValid() && !slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		return ok && a.Unmap() == r.ClusterIP.Unmap()
	}) {
		return fmt.Sprintf("its subject alternative names (%s) lack the ClusterIP %s the nodes pull from", certs.SANs(leaf), r.ClusterIP)
	}
	roots := x509.NewCertPool()
	if len(bytes.TrimSpace(caPEM)) == 0 || !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Sprintf("the Secret has no CA in %s to check it against, and the nodes could not trust it", bundle.Key)
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs.ParseChain(certPEM)[1:] {
		intermediates.AddCert(c)
	}
	at := now
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Sprintf("it does not chain to the CA in the Secret's %s, which the nodes trust (%v)", bundle.Key, err)
	}
	return ""
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
	published, legacy, err := r.bundle().Status(ctx)
	if err != nil {
		return false, err.Error()
	}
	leases := map[string]string{}
	if r.Release != "" {
		if leases, err = (bundle.Acks{Client: r.Client, Namespace: r.Namespace, Release: r.Release}).List(ctx); err != nil {
			return false, err.Error()
		}
	}
	acked := bundle.Count(leases, legacy, bundle.Fingerprint(published))
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
