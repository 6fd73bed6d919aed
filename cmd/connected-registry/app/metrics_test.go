package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestMetricsHandlerServesMetricsOnly(t *testing.T) {
	t.Parallel()
	// A debug server as Distribution's: metrics, and pprof beside them.
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, "registry_proxy_hits_total{type=\"blob\"} 3\n")
		default:
			io.WriteString(w, "pprof of "+r.URL.Path)
		}
	}))
	defer debug.Close()
	proxies, err := parseMetricsProxies("registry=" + debug.URL + "/metrics")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "connected_registry_test"}))
	srv := httptest.NewServer(metricsHandler(reg, proxies))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "connected_registry_test 0")
	code, body = get("/metrics/registry")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "registry_proxy_hits_total{type=\"blob\"} 3\n", body)
	for _, path := range []string{"/debug/pprof/", "/metrics/registry/../../debug/pprof/", "/metrics/other", "/debug/vars"} {
		code, body = get(path)
		require.Equal(t, http.StatusNotFound, code, "%s must not be served", path)
		require.False(t, strings.Contains(body, "pprof"), "%s reached the debug server", path)
	}

	debug.Close()
	code, _ = get("/metrics/registry")
	require.Equal(t, http.StatusBadGateway, code, "a registry that does not answer")
}
