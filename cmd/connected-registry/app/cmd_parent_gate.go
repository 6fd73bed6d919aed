package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/connected-registry/connected-registry/internal/parentgate"
)

const (
	// DefaultGateListen is the parent gate's address in the registry pod, as the chart's cr.parentGateAddr
	// renders it.
	DefaultGateListen = "127.0.0.1:5128"
	// gateReadHeaderTimeout bounds how long the registry may take to send a request's headers to the gate.
	gateReadHeaderTimeout = 10 * time.Second
	// gateShutdownTimeout bounds how long the gate waits for requests in flight when it stops.
	gateShutdownTimeout = 5 * time.Second
)

// ParentGateOptions runs the parent gate in the registry's pod: the way Distribution reaches its parent, so that
// a silent or hung parent delays a pull of cached content by at most ResponseTimeout, and concurrent pulls of a
// blob the cache lacks fetch it once (package parentgate).
type ParentGateOptions struct {
	*Common
	// Listen is the address the registry's remoteurl and HTTPS_PROXY name; keep it on loopback.
	Listen string
	// Parent is the parent's URL; empty makes the gate a CONNECT proxy only.
	Parent string
	// SpoolDir holds the blobs fetched for concurrent requests while they stream.
	SpoolDir string
	// Linger is parentgate.Gate's.
	Linger time.Duration
	// ResponseTimeout, DialTimeout and Cooldown are parentgate.Gate's.
	ResponseTimeout, DialTimeout, Cooldown time.Duration
	// UpstreamProxy and NoProxy send the gate's own traffic through an outbound proxy, as HTTPS_PROXY and
	// NO_PROXY would the registry's.
	UpstreamProxy, NoProxy string
}

// AddFlags registers the flags.
func (o *ParentGateOptions) AddFlags(fs *FlagSet) {
	fs.StringVar(&o.Listen, "listen", "CONNECTED_REGISTRY_GATE_LISTEN", DefaultGateListen,
		"address to accept the registry's requests on; keep it on loopback, inside the pod")
	fs.StringVar(&o.Parent, "parent", "CONNECTED_REGISTRY_GATE_PARENT", "",
		"the parent registry's https:// URL; requests other than CONNECT are forwarded to it, and concurrent fetches of one blob share one; empty: CONNECT only")
	fs.StringVar(&o.SpoolDir, "spool-dir", "CONNECTED_REGISTRY_GATE_SPOOL_DIR", os.TempDir(),
		"directory for blobs fetched for concurrent requests, as unlinked files while they stream")
	fs.DurationVar(&o.Linger, "linger", "CONNECTED_REGISTRY_GATE_LINGER", 10*time.Second,
		"how long a blob fetched whole stays spooled for the registry's requests that come after the fetch, while it stores the blob")
	fs.DurationVar(&o.ResponseTimeout, "response-timeout", "CONNECTED_REGISTRY_GATE_RESPONSE_TIMEOUT", 1500*time.Millisecond,
		"how long the registry's bytes may stay unanswered by the parent (TLS handshake, each request) before the gate cuts the connection")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", "CONNECTED_REGISTRY_GATE_DIAL_TIMEOUT", 1500*time.Millisecond,
		"limit of connecting to the parent or to the outbound proxy")
	fs.DurationVar(&o.Cooldown, "cooldown", "CONNECTED_REGISTRY_GATE_COOLDOWN", 10*time.Second,
		"how long to refuse new connections to a parent that did not answer, so pulls of cached content do not wait")
	fs.StringVar(&o.UpstreamProxy, "upstream-proxy", "HTTPS_PROXY", "",
		"outbound proxy (http:// or https:// URL) to reach the parent through; empty connects directly")
	fs.StringVar(&o.NoProxy, "no-proxy", "NO_PROXY", "", "hosts the outbound proxy is not used for, as NO_PROXY")
}

// Complete checks the options.
func (o *ParentGateOptions) Complete() error {
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return usageErrorf("--listen %q is not host:port: %v", o.Listen, err)
	}
	for name, d := range map[string]time.Duration{"--response-timeout": o.ResponseTimeout, "--dial-timeout": o.DialTimeout} {
		if d <= 0 {
			return usageErrorf("%s must be positive, got %s", name, d)
		}
	}
	if o.Cooldown < 0 {
		return usageErrorf("--cooldown must not be negative, got %s", o.Cooldown)
	}
	if o.Linger < 0 {
		return usageErrorf("--linger must not be negative, got %s", o.Linger)
	}
	if o.Parent != "" {
		u, err := url.Parse(o.Parent)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return usageErrorf("--parent %q is not the https:// (or http://) URL of a registry, without credentials or query", o.Parent)
		}
	}
	if o.UpstreamProxy != "" {
		u, err := url.Parse(o.UpstreamProxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageErrorf("--upstream-proxy %q is not an http:// or https:// URL", o.UpstreamProxy)
		}
	}
	return nil
}

// Run serves until ctx ends.
func (o *ParentGateOptions) Run(ctx context.Context, out io.Writer) error {
	proxyFor := (&httpproxy.Config{HTTPSProxy: o.UpstreamProxy, NoProxy: o.NoProxy}).ProxyFunc()
	g := &parentgate.Gate{
		SpoolDir:        o.SpoolDir,
		Linger:          o.Linger,
		ResponseTimeout: o.ResponseTimeout,
		DialTimeout:     o.DialTimeout,
		Cooldown:        o.Cooldown,
		Upstream: func(target string) (*url.URL, error) {
			return proxyFor(&url.URL{Scheme: "https", Host: target})
		},
		Log: o.Log,
	}
	if o.Parent != "" {
		g.Parent, _ = url.Parse(o.Parent)
	}
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on --listen %s: %w", o.Listen, err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: gateReadHeaderTimeout}
	fmt.Fprintf(out, "parent gate listening on %s: parent %q, response timeout %s, dial timeout %s, cooldown %s, outbound proxy %q\n",
		l.Addr(), o.Parent, o.ResponseTimeout, o.DialTimeout, o.Cooldown, o.UpstreamProxy)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), gateShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}
