package app

import (
	"fmt"
	"net"
	"net/http"

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
