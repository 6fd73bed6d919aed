// Package statusmetrics derives Prometheus metrics from what the release's objects in the API say: the nodes'
// trust (the trust agents' acknowledgement Leases against the published bundle), the pre-sync status ConfigMap,
// and the registry certificate's expiry. The registry pod's tls-reloader serves them; it already reads those
// objects. Nothing here runs on the nodes: the trust agents need no port of their own (no hostNetwork, no port
// clash), and a node whose agent is gone still shows, as a node without trust.
//
// The values are read at each scrape, so they are never older than the scrape. A read that fails leaves its
// metrics out of that scrape, and the scrape reports the error.
package statusmetrics

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// Names of the metrics. The check command and the chart's alerts and dashboard read them by name.
const (
	MetricNodeTrust         = "connected_registry_node_trust"
	MetricNodeTrustIgnored  = "connected_registry_node_trust_ignored"
	MetricTrustNodesDesired = "connected_registry_trust_nodes_desired"
	MetricSyncLastSuccess   = "connected_registry_sync_last_success_timestamp_seconds"
	MetricSyncBytes         = "connected_registry_sync_bytes"
	MetricSyncFailures      = "connected_registry_sync_consecutive_failures"
	MetricSyncLastRun       = "connected_registry_sync_last_run_timestamp_seconds"
	MetricCertificateExpiry = "connected_registry_certificate_expiry_timestamp_seconds"
)

// DefaultTimeout bounds each read of a scrape.
const DefaultTimeout = 5 * time.Second

// Values of the certificate label.
const (
	certificateServing = "serving"
	certificateCA      = "ca"
)

// Collector reads the objects at each scrape. Fill the fields, then register it in a prometheus.Registry.
type Collector struct {
	Client    kubernetes.Interface
	Namespace string
	// Bundle is the trust bundle ConfigMap and Acks the agents' Leases; Acks nil: no trust metrics.
	Bundle string
	Acks   *bundle.Acks
	// DaemonSet is the trust agents' DaemonSet, whose desired pods are the nodes that should trust the
	// registry; empty: not exported.
	DaemonSet string
	// SyncStatus is the pre-sync status ConfigMap; empty: no sync metrics.
	SyncStatus string
	// Secret is the registry's TLS Secret, whose certificates' expiry is exported; empty: not exported.
	Secret string
	// Timeout bounds each read; 0 is DefaultTimeout.
	Timeout time.Duration
}

var (
	descNodeTrust = prometheus.NewDesc(MetricNodeTrust,
		"1 when the node's trust agent has installed the registry's current CA and acknowledged it in its Lease, 0 when its Lease names another.",
		[]string{"node"}, nil)
	descNodeTrustIgnored = prometheus.NewDesc(MetricNodeTrustIgnored,
		"1 when the node's trust agent reports that containerd ignores the certs.d entry (config_path not set, another registry config), 0 when containerd uses it.",
		[]string{"node"}, nil)
	descTrustNodesDesired = prometheus.NewDesc(MetricTrustNodesDesired,
		"The nodes the trust agents' DaemonSet should run on: each should have connected_registry_node_trust 1.",
		nil, nil)
	descSyncLastSuccess = prometheus.NewDesc(MetricSyncLastSuccess,
		"Unix time of the last pre-sync run that synced every selected tag of the repository.",
		[]string{"repository"}, nil)
	descSyncBytes = prometheus.NewDesc(MetricSyncBytes,
		"Bytes the latest pre-sync run fetched from the parent for the repository.",
		[]string{"repository"}, nil)
	descSyncFailures = prometheus.NewDesc(MetricSyncFailures,
		"Pre-sync runs in a row that failed the repository (an error, a failed tag, the registry out of reach); 0 after a run that synced it whole.",
		[]string{"repository"}, nil)
	descSyncLastRun = prometheus.NewDesc(MetricSyncLastRun,
		"Unix time the latest pre-sync run started, by its result (running, complete, incomplete, window-ended, failed, stopped).",
		[]string{"result"}, nil)
	descCertificateExpiry = prometheus.NewDesc(MetricCertificateExpiry,
		"Unix time the registry's certificate (serving: tls.crt) or its CA (ca: the earliest of ca.crt) expires.",
		[]string{"certificate"}, nil)
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeTrust, descNodeTrustIgnored, descTrustNodesDesired, descSyncLastSuccess,
		descSyncBytes, descSyncFailures, descSyncLastRun, descCertificateExpiry} {
		ch <- d
	}
}

// Collect reads the objects and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if c.Acks != nil {
		if err := c.collectTrust(ctx, ch); err != nil {
			ch <- prometheus.NewInvalidMetric(descNodeTrust, err)
		}
	}
	if c.DaemonSet != "" {
		ds, err := c.Client.AppsV1().DaemonSets(c.Namespace).Get(ctx, c.DaemonSet, metav1.GetOptions{})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descTrustNodesDesired, fmt.Errorf("reading DaemonSet %s: %w", c.DaemonSet, err))
		} else {
			ch <- prometheus.MustNewConstMetric(descTrustNodesDesired, prometheus.GaugeValue, float64(ds.Status.DesiredNumberScheduled))
		}
	}
	if c.SyncStatus != "" {
		if err := c.collectSync(ctx, ch); err != nil {
			ch <- prometheus.NewInvalidMetric(descSyncLastSuccess, err)
		}
	}
	if c.Secret != "" {
		if err := c.collectCertificates(ctx, ch); err != nil {
			ch <- prometheus.NewInvalidMetric(descCertificateExpiry, err)
		}
	}
}

func (c *Collector) collectTrust(ctx context.Context, ch chan<- prometheus.Metric) error {
	ca, _, err := bundle.ConfigMap{Client: c.Client, Namespace: c.Namespace, Name: c.Bundle}.Status(ctx)
	if err != nil {
		return err
	}
	states, err := c.Acks.States(ctx)
	if err != nil {
		return err
	}
	current := ""
	if len(ca) > 0 {
		current = bundle.Fingerprint(ca)
	}
	for node, st := range states {
		ch <- prometheus.MustNewConstMetric(descNodeTrust, prometheus.GaugeValue, boolValue(current != "" && st.Fingerprint == current), node)
		switch st.Containerd {
		case bundle.ContainerdIgnores, bundle.ContainerdUses:
			ch <- prometheus.MustNewConstMetric(descNodeTrustIgnored, prometheus.GaugeValue, boolValue(st.Containerd == bundle.ContainerdIgnores), node)
		}
	}
	return nil
}

func (c *Collector) collectSync(ctx context.Context, ch chan<- prometheus.Metric) error {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.SyncStatus, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the sync status ConfigMap %s: %w", c.SyncStatus, err)
	}
	st, err := presync.ParseStatus([]byte(cm.Data[presync.StatusKey]))
	if err != nil {
		return fmt.Errorf("ConfigMap %s: %w", c.SyncStatus, err)
	}
	if !st.Run.Started.IsZero() {
		ch <- prometheus.MustNewConstMetric(descSyncLastRun, prometheus.GaugeValue, unix(st.Run.Started), st.Run.Result)
	}
	for _, r := range st.Repositories {
		if r.LastSuccess != nil {
			ch <- prometheus.MustNewConstMetric(descSyncLastSuccess, prometheus.GaugeValue, unix(*r.LastSuccess), r.Name)
		}
		ch <- prometheus.MustNewConstMetric(descSyncBytes, prometheus.GaugeValue, float64(r.BytesFetched), r.Name)
		ch <- prometheus.MustNewConstMetric(descSyncFailures, prometheus.GaugeValue, float64(r.ConsecutiveFailures), r.Name)
	}
	return nil
}

func (c *Collector) collectCertificates(ctx context.Context, ch chan<- prometheus.Metric) error {
	s, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, c.Secret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", c.Secret, err)
	}
	var errs []error
	for _, k := range []struct{ key, label string }{{"tls.crt", certificateServing}, {bundle.Key, certificateCA}} {
		certs, err := parseCertificates(s.Data[k.key])
		if err != nil {
			errs = append(errs, fmt.Errorf("secret %s, key %s: %w", c.Secret, k.key, err))
			continue
		}
		if len(certs) == 0 {
			continue
		}
		expiry := certs[0].NotAfter
		if k.label == certificateCA {
			for _, ca := range certs[1:] {
				if ca.NotAfter.Before(expiry) {
					expiry = ca.NotAfter
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(descCertificateExpiry, prometheus.GaugeValue, unix(expiry), k.label)
	}
	return errors.Join(errs...)
}

// parseCertificates reads the PEM certificates of data; none in empty data.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
