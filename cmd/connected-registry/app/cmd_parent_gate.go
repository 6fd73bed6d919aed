package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpproxy"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/connected-registry/connected-registry/internal/parentgate"
)

const (
	// DefaultGateListen is the parent gate's address in the registry pod, as the chart's cr.parentGateAddr
	// renders it: the registry's remoteurl names it.
	DefaultGateListen = "127.0.0.1:5128"
	// gateShutdownTimeout bounds how long the gate waits for requests in flight when it stops.
	gateShutdownTimeout = 5 * time.Second
)

// ParentGateOptions runs the parent gate in the registry's pod: the registry's remoteurl, which forwards its
// reads to the parent, its token endpoint and its storage hosts (see package parentgate).
type ParentGateOptions struct {
	// gatePulls keeps the registry's pull records for the bounded cache (cmd_parent_gate_pulls.go).
	gatePulls
	// gateSpace refuses blobs a full cache volume cannot hold (cmd_parent_gate_space.go).
	gateSpace
	// Listen is the loopback address the registry's remoteurl names.
	Listen string
	// Parent is the parent's URL.
	Parent string
	// ShareFetches lets concurrent GETs of one blob share one fetch.
	ShareFetches bool
	// SpoolDir holds the blobs shared fetches stream from.
	SpoolDir string
	// SpoolBudget caps the bytes spooled at once, as a Kubernetes quantity; empty: no cap.
	SpoolBudget string
	// MaxConns caps the registry's connections to the gate.
	MaxConns int
	// Linger, ResponseTimeout, BodyTimeout, WriteTimeout, DialTimeout and Cooldown are parentgate.Gate's.
	Linger, ResponseTimeout, BodyTimeout, WriteTimeout, DialTimeout, Cooldown time.Duration
	// UpstreamProxy and NoProxy send the gate's own traffic through an outbound proxy, as HTTPS_PROXY and
	// NO_PROXY would the registry's.
	UpstreamProxy, NoProxy string
	// MetricsAddr serves the gate's metrics at /metrics; empty serves none. The cache volume's use and size
	// (gateSpace's CacheDir) are metrics too. ProbeInterval is how often a parent the registry did not ask is
	// probed, so the metrics follow it.
	MetricsAddr   string
	ProbeInterval time.Duration
	// Peers is the DNS name of the headless Service of the registry replicas; empty: one replica, no routing.
	Peers string
	// PeerListen is the address the other replicas' gates reach this one on; PodIP is this pod's address.
	PeerListen, PodIP string
	// PeerSecret is the release's shared secret the replicas' gates authenticate each other with.
	PeerSecret string
	// PeerRefresh is how often the replicas are looked up.
	PeerRefresh time.Duration
	budget      int64
	proxy       *url.URL
}

// AddFlags registers the flags.
func (o *ParentGateOptions) AddFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_GATE_"
	fs.StringVar(&o.Listen, "listen", p+"LISTEN", DefaultGateListen,
		"loopback address to accept the registry's requests on (its proxy.remoteurl); other addresses are refused")
	fs.StringVar(&o.Parent, "parent", p+"PARENT", "", "the parent registry's https:// URL (required)")
	fs.BoolVar(&o.ShareFetches, "share-fetches", p+"SHARE_FETCHES", true,
		"let concurrent GETs of one blob share one fetch from the parent, spooled in --spool-dir")
	fs.StringVar(&o.SpoolDir, "spool-dir", p+"SPOOL_DIR", os.TempDir(),
		"directory of its own for blobs that shared fetches stream from; emptied when the gate starts")
	fs.StringVar(&o.SpoolBudget, "spool-budget", p+"SPOOL_BUDGET", "",
		"size of the spool volume, as a Kubernetes quantity (4Gi): the gate spools at most 15/16 of it at once, leaving room for the file system, and a fetch beyond streams unshared; empty: no cap")
	fs.IntVar(&o.MaxConns, "max-conns", p+"MAX_CONNS", 512, "most connections the registry may hold to the gate at once")
	fs.DurationVar(&o.Linger, "linger", p+"LINGER", 10*time.Second,
		"how long a blob fetched whole stays spooled for the registry's requests that come after the fetch, while it stores the blob")
	fs.DurationVar(&o.ResponseTimeout, "response-timeout", p+"RESPONSE_TIMEOUT", 1500*time.Millisecond,
		"how long the gate's bytes may stay unanswered (TLS handshake, each request) before it cuts the connection")
	fs.DurationVar(&o.BodyTimeout, "body-timeout", p+"BODY_TIMEOUT", 15*time.Second,
		"how long an answer's body may send nothing before the gate cuts it; 0 waits for ever")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", p+"WRITE_TIMEOUT", time.Minute,
		"how long the registry may take no bytes of an answer before the gate cuts its request; 0 waits for ever")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", p+"DIAL_TIMEOUT", 1500*time.Millisecond,
		"limit of connecting to a host or to the outbound proxy")
	fs.DurationVar(&o.Cooldown, "cooldown", p+"COOLDOWN", 10*time.Second,
		"how long to refuse new connections to a host that did not answer, so pulls of cached content do not wait")
	fs.StringVar(&o.UpstreamProxy, "upstream-proxy", "HTTPS_PROXY", "",
		"outbound proxy (http:// or https:// URL) to reach the parent through; empty connects directly")
	fs.StringVar(&o.NoProxy, "no-proxy", "NO_PROXY", "", "hosts the outbound proxy is not used for, as NO_PROXY")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", p+"METRICS_ADDR", "",
		"address to serve the gate's Prometheus metrics on, at /metrics (the pod's address, :9091); empty serves none")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", p+"PROBE_INTERVAL", 30*time.Second,
		"with --metrics-addr, how often to ask the parent for /v2/ when the registry has not heard from it, so connected_registry_parent_up follows it; 0 never probes")
	o.addPullFlags(fs)
	o.addSpaceFlags(fs)
	fs.StringVar(&o.Peers, "peers", p+"PEERS", "",
		"DNS name of the headless Service of the registry's replicas (or names, comma-separated): each blob is fetched from the parent by the replica that owns its digest, once for all; empty: this replica fetches every blob")
	fs.StringVar(&o.PeerListen, "peer-listen", p+"PEER_LISTEN", ":5129", "address the other replicas' gates reach this one on (with --peers)")
	fs.StringVar(&o.PodIP, "pod-ip", "POD_IP", "", "this pod's IP address, as the headless Service lists it (with --peers)")
	fs.StringVar(&o.PeerSecret, "peer-secret", p+"PEER_SECRET", "", "the release's shared secret the replicas' gates authenticate each other with (with --peers; give it by its environment variable)")
	fs.DurationVar(&o.PeerRefresh, "peer-refresh", p+"PEER_REFRESH", 5*time.Second, "how often to look the replicas up (with --peers)")
}

// Complete checks the options. No message repeats the outbound proxy's URL: it may hold a password.
func (o *ParentGateOptions) Complete() error {
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return usageErrorf("--listen %q is not host:port: %v", o.Listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageErrorf("--listen %q: %v", o.Listen, parentgate.ErrNotLoopback)
	}
	for name, d := range map[string]time.Duration{"--response-timeout": o.ResponseTimeout, "--dial-timeout": o.DialTimeout} {
		if d <= 0 {
			return usageErrorf("%s must be positive, got %s", name, d)
		}
	}
	for name, d := range map[string]time.Duration{"--cooldown": o.Cooldown, "--linger": o.Linger, "--body-timeout": o.BodyTimeout, "--write-timeout": o.WriteTimeout} {
		if d < 0 {
			return usageErrorf("%s must not be negative, got %s", name, d)
		}
	}
	if o.ProbeInterval < 0 {
		return usageErrorf("--probe-interval must not be negative, got %s", o.ProbeInterval)
	}
	if o.MaxConns < 0 {
		return usageErrorf("--max-conns must not be negative, got %d", o.MaxConns)
	}
	u, err := url.Parse(o.Parent)
	if o.Parent == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return usageErrorf("--parent %q is not the https:// (or http://) URL of a registry, without credentials or query", o.Parent)
	}
	if o.SpoolBudget != "" {
		q, err := resource.ParseQuantity(o.SpoolBudget)
		if err != nil || q.Sign() < 0 {
			return usageErrorf("--spool-budget %q is not a size such as 8Gi", o.SpoolBudget)
		}
		o.budget = q.Value() / 16 * 15
	}
	if o.Peers != "" {
		if err := o.completePeers(); err != nil {
			return err
		}
	}
	if o.UpstreamProxy != "" {
		p, err := url.Parse(o.UpstreamProxy)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return usageErrorf("--upstream-proxy (HTTPS_PROXY) is not an http:// or https:// URL")
		}
		o.proxy = p
	}
	if err := o.completeSpace(); err != nil {
		return err
	}
	return o.completePulls()
}

// Run serves until ctx ends.
func (o *ParentGateOptions) Run(ctx context.Context, out io.Writer) error {
	log := o.Log
	proxyFor := (&httpproxy.Config{HTTPSProxy: o.UpstreamProxy, NoProxy: o.NoProxy}).ProxyFunc()
	parent, _ := url.Parse(o.Parent)
	g := &parentgate.Gate{
		Parent:          parent,
		TLSConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		ShareFetches:    o.ShareFetches,
		SpoolDir:        o.SpoolDir,
		SpoolBudget:     o.budget,
		Linger:          o.Linger,
		ResponseTimeout: o.ResponseTimeout,
		BodyTimeout:     o.BodyTimeout,
		WriteTimeout:    o.WriteTimeout,
		DialTimeout:     o.DialTimeout,
		Cooldown:        o.Cooldown,
		Upstream: func(target string) (*url.URL, error) {
			return proxyFor(&url.URL{Scheme: "https", Host: target})
		},
		Log:      log,
		Space:    o.space(),
		FullHint: o.fullHint(),
	}
	if o.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		m, err := parentgate.NewMetrics(reg, g.Spooled, o.CacheDir)
		if err != nil {
			return err
		}
		g.Metrics = m
		stop, err := serveMetrics(o.MetricsAddr, metricsHandler(reg, nil))
		if err != nil {
			return err
		}
		defer stop()
		if o.ProbeInterval > 0 {
			go g.ProbeEvery(ctx, o.ProbeInterval)
		}
	}
	var peerSrv *http.Server
	if o.Peers != "" {
		_, port, _ := net.SplitHostPort(o.PeerListen)
		g.Peers = &parentgate.Peers{
			Self:    net.JoinHostPort(o.PodIP, port),
			Secret:  o.PeerSecret,
			Lookup:  parentgate.ResolveMembers(o.Peers, port),
			Refresh: o.PeerRefresh,
		}
		pl, err := net.Listen("tcp", o.PeerListen)
		if err != nil {
			return fmt.Errorf("listening on --peer-listen %s: %w", o.PeerListen, err)
		}
		peerSrv = &http.Server{Handler: g.PeerHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		go func() {
			if err := peerSrv.Serve(pl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("the peer port stopped", "addr", o.PeerListen, "err", err)
			}
		}()
		defer peerSrv.Close()
		fmt.Fprintf(out, "parent gate: one fetch per blob across the replicas of %s, as %s\n", o.Peers, g.Peers.Self)
	}
	if o.ShareFetches {
		if err := g.Sweep(); err != nil {
			log.Warn("removing spool files of an earlier run", "dir", o.SpoolDir, "err", err)
		}
	}
	l, err := parentgate.Listen(o.Listen, o.MaxConns)
	if err != nil {
		return fmt.Errorf("listening on --listen %s: %w", o.Listen, err)
	}
	srv := g.Server()
	srv.Handler = o.withPulls(ctx, srv.Handler)
	proxy := "none"
	if o.proxy != nil {
		proxy = o.proxy.Redacted()
	}
	fmt.Fprintf(out, "parent gate listening on %s: parent %s, shared fetches %t, response timeout %s, body timeout %s, dial timeout %s, cooldown %s, outbound proxy %s\n",
		l.Addr(), o.Parent, o.ShareFetches, o.ResponseTimeout, o.BodyTimeout, o.DialTimeout, o.Cooldown, proxy)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), gateShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// completePeers checks the options of the routing between replicas. No message repeats the secret.
func (o *ParentGateOptions) completePeers() error {
	if _, _, err := net.SplitHostPort(o.PeerListen); err != nil {
		return usageErrorf("--peer-listen %q is not host:port: %v", o.PeerListen, err)
	}
	if net.ParseIP(o.PodIP) == nil {
		return usageErrorf("--pod-ip (POD_IP) %q is not an IP address: with --peers the chart gives the pod's status.podIP", o.PodIP)
	}
	if len(o.PeerSecret) < 16 {
		return usageErrorf("--peer-secret (CONNECTED_REGISTRY_GATE_PEER_SECRET) must be at least 16 characters with --peers, got %d", len(o.PeerSecret))
	}
	if o.PeerRefresh <= 0 {
		return usageErrorf("--peer-refresh must be positive, got %s", o.PeerRefresh)
	}
	if !o.ShareFetches {
		return usageErrorf("--peers needs --share-fetches: the owner of a blob shares its one fetch with the other replicas")
	}
	return nil
}
