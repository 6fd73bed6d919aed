package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves reg at /metrics, and extra handlers at their paths; nothing else (no pprof, no expvar).
func metricsHandler(reg *prometheus.Registry, extra map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	for p, h := range extra {
		mux.Handle("GET "+p, h)
	}
	return mux
}

// serveMetrics serves h on addr (a --metrics-addr) in the background; stop closes the server. An empty addr
// serves nothing.
func serveMetrics(addr string, h http.Handler) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: healthReadHeaderTimeout}
	go func() { _ = srv.Serve(ln) }()
	return func() { srv.Close() }, nil
}

// metricsProxyTimeout bounds a scrape of a metrics endpoint on the pod's loopback.
const metricsProxyTimeout = 10 * time.Second

// parseMetricsProxies reads --proxy-metrics: a comma-separated list of name=URL, each URL a loopback http://
// address (a container's debug port, which serves more than metrics and must stay in the pod). It returns the
// handlers by path, /metrics/<name>.
func parseMetricsProxies(list string) (map[string]http.Handler, error) {
	out := map[string]http.Handler{}
	for _, item := range strings.Split(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, raw, ok := strings.Cut(item, "=")
		u, err := url.Parse(raw)
		if !ok || err != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) || !validProxyName(name) {
			return nil, usageErrorf("--proxy-metrics %q is not name=http://<loopback address>/<path>", item)
		}
		out["/metrics/"+name] = metricsProxy(u.String())
	}
	return out, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func validProxyName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// metricsProxy answers with what target (one fixed URL) answers, so that only that path of a debug server
// is reachable from outside the pod.
func metricsProxy(target string) http.Handler {
	client := &http.Client{Timeout: metricsProxyTimeout}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if a := r.Header.Get("Accept"); a != "" {
			req.Header.Set("Accept", a)
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, fmt.Sprintf("scraping %s: %v", target, err), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}
