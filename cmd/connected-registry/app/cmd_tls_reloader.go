package app

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connected-registry/connected-registry/internal/reloader"
	"github.com/connected-registry/connected-registry/internal/statusmetrics"
	"github.com/connected-registry/connected-registry/internal/trust"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

// TLSReloaderOptions runs the tls-reloader, the registry pod's native sidecar that publishes the registry's CA to
// the trust bundle and writes the registry's certificate, a renewed one once the nodes trust its CA (package
// reloader).
type TLSReloaderOptions struct {
	KubeOptions
	// Secret is the registry's kubernetes.io/tls Secret; Bundle the trust bundle ConfigMap.
	Secret, Bundle string
	// DaemonSet is the trust agent's DaemonSet; empty waits for nobody. Release names the agents'
	// acknowledgement Leases.
	DaemonSet, Release string
	// TLSDir receives tls.crt and tls.key for the registry; empty only publishes the bundle.
	TLSDir string
	// ClusterIP is service.clusterIP: a certificate without it is not written.
	ClusterIP string
	// HealthAddr serves /started for the sidecar's startup probe.
	HealthAddr string
	// Interval between two passes; TrustWait bounds the wait of a certificate from a new CA for the nodes.
	Interval, TrustWait time.Duration
	// PodName and PodUID name the registry pod, which the Events are about.
	PodName, PodUID string
	// MetricsAddr serves the metrics derived from the release's objects at /metrics (package statusmetrics),
	// and ProxyMetrics' endpoints at /metrics/<name>; empty serves none. SyncStatus is the pre-sync status
	// ConfigMap; empty: no sync metrics.
	MetricsAddr, ProxyMetrics, SyncStatus string

	clusterIP netip.Addr
	proxies   map[string]http.Handler
}

// AddFlags registers the flags.
func (o *TLSReloaderOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "TLS_RELOADER", requestTimeoutHelp)
	const p = "CONNECTED_REGISTRY_TLS_RELOADER_"
	fs.StringVar(&o.Secret, "secret", p+"SECRET", "", "the registry's kubernetes.io/tls Secret (required)")
	fs.StringVar(&o.Bundle, "bundle-configmap", p+"BUNDLE_CONFIGMAP", "", "the ConfigMap receiving the CA bundle as ca.crt (required)")
	fs.StringVar(&o.DaemonSet, "daemonset", p+"DAEMONSET", "", "the trust agent's DaemonSet; empty when trust distribution is off")
	fs.StringVar(&o.Release, "release", p+"RELEASE", "", "the Helm release, whose trust agents acknowledge the bundle in Leases <release>-trust-ack-<node>")
	fs.StringVar(&o.TLSDir, "tls-dir", p+"TLS_DIR", "", "directory receiving tls.crt and tls.key for the registry; empty only publishes the CA bundle")
	fs.StringVar(&o.ClusterIP, "cluster-ip", p+"CLUSTER_IP", "", "service.clusterIP, the address nodes pull from: a certificate without it is not written; empty skips that check")
	fs.StringVar(&o.HealthAddr, "health-addr", p+"HEALTH_ADDR", ":8082", "address of /started for the startup probe; empty serves none")
	fs.DurationVar(&o.Interval, "interval", p+"INTERVAL", 2*time.Second, "how often to read the Secret and compare it with what is written")
	fs.DurationVar(&o.TrustWait, "trust-wait", p+"TRUST_WAIT", 5*time.Minute,
		"how long a certificate from a new CA waits for every node to trust that CA before it is served anyway")
	fs.StringVar(&o.PodName, "pod-name", "POD_NAME", "", "the registry pod's name: the Events about refused certificates are about it; empty sends none")
	fs.StringVar(&o.PodUID, "pod-uid", "POD_UID", "", "the registry pod's UID")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", p+"METRICS_ADDR", "",
		"address to serve Prometheus metrics on (the pod's address, :9090): node trust, sync status and certificate expiry at /metrics, and --proxy-metrics; empty serves none")
	fs.StringVar(&o.ProxyMetrics, "proxy-metrics", p+"PROXY_METRICS", "",
		"comma-separated name=http://127.0.0.1:<port>/metrics: metrics of other containers' loopback debug ports, served at /metrics/<name> (only that path of them)")
	fs.StringVar(&o.SyncStatus, "sync-status-configmap", p+"SYNC_STATUS_CONFIGMAP", "",
		"the pre-sync status ConfigMap, whose status.json the sync metrics come from; empty when sync is off")
}

// Complete checks the flags and builds the API client.
func (o *TLSReloaderOptions) Complete() error {
	if o.Secret == "" || o.Bundle == "" {
		return usageErrorf("--secret and --bundle-configmap are required")
	}
	if o.Interval <= 0 {
		return usageErrorf("--interval %s must be positive", o.Interval)
	}
	if o.ClusterIP != "" {
		ip, err := netip.ParseAddr(o.ClusterIP)
		if err != nil {
			return usageErrorf("--cluster-ip %q is not an IP address", o.ClusterIP)
		}
		o.clusterIP = ip
	}
	if o.Timeout <= 0 {
		o.Timeout = reloader.DefaultRequestTimeout
	}
	proxies, err := parseMetricsProxies(o.ProxyMetrics)
	if err != nil {
		return err
	}
	o.proxies = proxies
	return o.complete()
}

// Run serves /started and keeps the registry's certificate up to date until ctx ends.
func (o *TLSReloaderOptions) Run(ctx context.Context, out io.Writer) error {
	r := &reloader.Reloader{
		Client: o.Client, Namespace: o.Namespace, Secret: o.Secret, Bundle: o.Bundle, DaemonSet: o.DaemonSet,
		Release: o.Release, TLSDir: o.TLSDir, ClusterIP: o.clusterIP, Interval: o.Interval, TrustWait: o.TrustWait,
		RequestTimeout: o.Timeout, Log: o.Log,
	}
	if o.PodName != "" {
		r.Events = &trust.PodEvents{Client: o.Client, Namespace: o.Namespace, Pod: o.PodName, UID: o.PodUID,
			Component: "tls-reloader", Log: o.Log}
	}
	stop, err := serveHealth(o.HealthAddr, r.StartedHandler())
	if err != nil {
		return err
	}
	defer stop()
	if o.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		c := &statusmetrics.Collector{Client: o.Client, Namespace: o.Namespace, Bundle: o.Bundle, DaemonSet: o.DaemonSet,
			SyncStatus: o.SyncStatus, Secret: o.Secret, Timeout: o.Timeout}
		if o.DaemonSet != "" {
			c.Acks = &bundle.Acks{Client: o.Client, Namespace: o.Namespace, Release: o.Release}
		}
		if err := reg.Register(c); err != nil {
			return err
		}
		stopMetrics, err := serveMetrics(o.MetricsAddr, metricsHandler(reg, o.proxies))
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	return r.Run(ctx, out)
}
