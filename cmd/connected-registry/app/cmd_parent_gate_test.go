package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

func TestParentGateCommandLine(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{
			name:    "a listen address without a port should be a usage error",
			args:    []string{"connected-registry", "parent-gate", "--listen", "127.0.0.1"},
			wantErr: `--listen "127.0.0.1" is not host:port: address 127.0.0.1: missing port in address`,
		},
		{
			name:    "a listen address off the loopback should be a usage error: the gate forwards with the registry's credentials",
			args:    []string{"connected-registry", "parent-gate", "--listen", "0.0.0.0:5128", "--parent", "https://parent.example"},
			wantErr: `--listen "0.0.0.0:5128": the parent gate listens only on a loopback address (127.0.0.1 or ::1)`,
		},
		{
			name:    "a zero response timeout should be a usage error naming the flag",
			args:    []string{"connected-registry", "parent-gate", "--response-timeout", "0s"},
			wantErr: "--response-timeout must be positive, got 0s",
		},
		{
			name:    "no parent should be a usage error naming the flag",
			args:    []string{"connected-registry", "parent-gate"},
			wantErr: `--parent "" is not the https:// (or http://) URL of a registry, without credentials or query`,
		},
		{
			name:    "a spool budget that is not a size should be a usage error naming the flag",
			args:    []string{"connected-registry", "parent-gate", "--parent", "https://parent.example", "--spool-budget", "lots"},
			wantErr: `--spool-budget "lots" is not a size such as 8Gi`,
		},
		{
			name:    "a parent that is not a registry URL should be a usage error naming the flag",
			args:    []string{"connected-registry", "parent-gate", "--parent", "parent.example:443"},
			wantErr: `--parent "parent.example:443" is not the https:// (or http://) URL of a registry, without credentials or query`,
		},
		{
			name:    "an outbound proxy from HTTPS_PROXY that is not a URL should be a usage error that does not repeat it",
			args:    []string{"connected-registry", "parent-gate", "--parent", "https://parent.example"},
			env:     map[string]string{"HTTPS_PROXY": "ftp://proxyuser:S3cretProxyPass@proxy.corp:3128"},
			wantErr: `--upstream-proxy (HTTPS_PROXY) is not an http:// or https:// URL`,
		},
		{
			name:    "replicas without the pod's IP should be a usage error naming the variable the chart sets",
			args:    []string{"connected-registry", "parent-gate", "--parent", "https://parent.example", "--peers", "cr-peers.ns.svc"},
			env:     map[string]string{"CONNECTED_REGISTRY_GATE_PEER_SECRET": "0123456789abcdef0123"},
			wantErr: `--pod-ip (POD_IP) "" is not an IP address: with --peers the chart gives the pod's status.podIP`,
		},
		{
			name:    "replicas with a short shared secret should be a usage error that does not repeat it",
			args:    []string{"connected-registry", "parent-gate", "--parent", "https://parent.example", "--peers", "cr-peers.ns.svc"},
			env:     map[string]string{"POD_IP": "10.1.2.3", "CONNECTED_REGISTRY_GATE_PEER_SECRET": "short-secret"},
			wantErr: `--peer-secret (CONNECTED_REGISTRY_GATE_PEER_SECRET) must be at least 16 characters with --peers, got 12`,
		},
		{
			name:    "replicas without shared fetches should be a usage error: the owner shares its one fetch",
			args:    []string{"connected-registry", "parent-gate", "--parent", "https://parent.example", "--peers", "cr-peers.ns.svc", "--share-fetches=false"},
			env:     map[string]string{"POD_IP": "10.1.2.3", "CONNECTED_REGISTRY_GATE_PEER_SECRET": "0123456789abcdef0123"},
			wantErr: `--peers needs --share-fetches: the owner of a blob shares its one fetch with the other replicas`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, tt.env, "", tt.args...)
			require.Equal(t, 2, app.ExitCode(r.err))
			require.EqualError(t, r.err, tt.wantErr)
		})
	}
}

func TestParentGateServesUntilCanceled(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()

	parent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "parent saw "+r.URL.Path)
	}))
	defer parent.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- app.Execute(ctx, []string{"connected-registry", "parent-gate", "--listen", addr, "--response-timeout", "200ms", "--spool-dir", t.TempDir()},
			app.Streams{In: strings.NewReader(""), Out: &out, Err: &out}, envMap(map[string]string{
				"CONNECTED_REGISTRY_GATE_PARENT": parent.URL,
				"HTTPS_PROXY":                    "http://proxyuser:S3cretProxyPass@127.0.0.1:9",
				"NO_PROXY":                       "127.0.0.1",
			}))
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "parent gate listening on "+addr) }, 10*time.Second, 10*time.Millisecond)
	resp, err := http.Get("http://" + addr + "/v2/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "parent saw /v2/", string(body), "the gate forwards the registry API to the parent")
	resp, err = http.Post("http://"+addr+"/v2/", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "the gate only reads from the parent")
	require.Contains(t, out.String(), "outbound proxy http://proxyuser:xxxxx@127.0.0.1:9")
	require.NotContains(t, out.String(), "S3cretProxyPass", "the outbound proxy's password must not be printed")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the gate did not stop when its context ended")
	}
}

func TestParentGateServesMetrics(t *testing.T) {
	t.Parallel()
	addrs := make([]string, 2)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addrs[i] = l.Addr().String()
		l.Close()
	}
	listen, metricsAddr := addrs[0], addrs[1]
	parent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
	defer parent.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- app.Execute(ctx, []string{"connected-registry", "parent-gate", "--listen", listen, "--parent", parent.URL,
			"--spool-dir", t.TempDir(), "--metrics-addr", metricsAddr, "--cache-dir", t.TempDir(), "--probe-interval", "0s"},
			app.Streams{In: strings.NewReader(""), Out: &out, Err: &out}, envMap(nil))
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "parent gate listening on "+listen) }, 10*time.Second, 10*time.Millisecond)
	resp, err := http.Get("http://" + listen + "/v2/")
	require.NoError(t, err)
	resp.Body.Close()

	families := scrape(t, "http://"+metricsAddr+"/metrics")
	for _, name := range []string{"connected_registry_parent_up", "connected_registry_parent_last_success_timestamp_seconds",
		"connected_registry_parent_fetches_total", "connected_registry_parent_bytes_total", "connected_registry_spool_bytes",
		"connected_registry_cache_used_bytes", "connected_registry_cache_capacity_bytes"} {
		require.Contains(t, families, name)
	}
	require.EqualValues(t, 1, families["connected_registry_parent_up"].GetMetric()[0].GetGauge().GetValue(), "the parent answered /v2/")
	require.Len(t, families["connected_registry_parent_fetches_total"].GetMetric(), 3, "started, shared and failed")

	for _, path := range []string{"/debug/pprof/", "/debug/vars", "/v2/"} {
		resp, err := http.Get("http://" + metricsAddr + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "the metrics address serves /metrics only, not %s", path)
	}
	cancel()
	require.NoError(t, <-done)
}

// scrape reads a Prometheus text exposition with the Prometheus text parser.
func scrape(t *testing.T, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}
