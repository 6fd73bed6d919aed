package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// metricsEndpoint is one path of the metrics Service that the ServiceMonitor scrapes.
type metricsEndpoint struct{ port, path string }

var metricsEndpoints = []metricsEndpoint{{"9090", "/metrics"}, {"9090", "/metrics/registry"}, {"9091", "/metrics"}}

// scrapeMetrics reads every metrics endpoint of the release through the API server's service proxy, parsed with
// the Prometheus text parser; it also adds the names it saw to seen.
func scrapeMetrics(t *testing.T, ctx context.Context, ns, svc string, seen map[string]bool) map[string]*dto.MetricFamily {
	t.Helper()
	all := map[string]*dto.MetricFamily{}
	for _, e := range metricsEndpoints {
		raw, err := env.Client.CoreV1().Services(ns).ProxyGet("http", svc, e.port, e.path, nil).DoRaw(ctx)
		require.NoError(t, err, "scraping %s:%s%s", svc, e.port, e.path)
		p := expfmt.NewTextParser(model.UTF8Validation)
		families, err := p.TextToMetricFamilies(bytes.NewReader(raw))
		require.NoError(t, err, "parsing %s:%s%s", svc, e.port, e.path)
		require.NotEmpty(t, families, "%s:%s%s serves no metrics", svc, e.port, e.path)
		for n, f := range families {
			all[n] = f
			seen[n] = true
		}
	}
	return all
}

// sample is the sum of the samples of a family whose labels include kv.
func sample(families map[string]*dto.MetricFamily, name string, kv ...string) float64 {
	f, ok := families[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		default:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// pullBlobs pulls ref's image of this machine's platform through the registry with a client of its own, and
// returns the number of blobs (config and layers), their bytes and the smallest.
func pullBlobs(t *testing.T, ctx context.Context, ref string) (blobs int, size, smallest int64) {
	t.Helper()
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithTransport(env.CA.Transport()),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	require.NoError(t, err)
	cfg, err := img.RawConfigFile()
	require.NoError(t, err)
	blobs, size, smallest = 1, int64(len(cfg)), int64(len(cfg))
	layers, err := img.Layers()
	require.NoError(t, err)
	for _, l := range layers {
		rc, err := l.Compressed()
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		require.NoError(t, err)
		blobs++
		size += n
		smallest = min(smallest, n)
	}
	return blobs, size, smallest
}

// TestMetrics installs the chart with metrics and pre-sync on, and scrapes every metrics endpoint through the
// API server: a cold pull moves the gate's fetches and the registry's misses by the image's blobs and its bytes
// from the parent by at least their size; a warm pull fetches nothing; a pre-sync run shows per repository; every
// node trusts the registry; with the parent stopped, parent_up turns 0. Every metric the chart's dashboard and
// alerts name was seen.
func TestMetrics(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	inst := framework.CLIInstaller("helm4")
	ns, release := "cr-e2e-metrics", "cr"
	svc := release + "-connected-registry-metrics"
	pushUnpulledImage(t, ctx, presyncRepository+":metrics-cold")
	pushUnpulledImage(t, ctx, presyncRepository+":metrics-sync")

	site, err := env.PrepareBYOCSite(ctx, ns, release, false)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
		}
		_ = inst.Uninstall(context.Background(), env, release, ns)
	})
	values, err := json.Marshal(map[string]any{
		"metrics.enabled": true,
		"sync": map[string]any{"enabled": true, "schedule": "0 0 1 1 *", "repositories": []any{
			map[string]any{"name": presyncRepository, "tags": []any{"metrics-sync"}},
		}},
	})
	require.NoError(t, err)
	valuesFile := filepath.Join(env.State, ns+"-metrics.json")
	require.NoError(t, os.WriteFile(valuesFile, values, 0o600))
	t.Cleanup(func() { _ = os.Remove(valuesFile) })
	start := time.Now()
	require.NoError(t, inst.Install(ctx, env, release, ns, []string{site.ValuesFile, valuesFile}))
	t.Logf("installed and Ready in %s", time.Since(start).Round(100*time.Millisecond))
	seen := map[string]bool{}

	// Every node acknowledges the current CA, and containerd uses it.
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		m := scrapeMetrics(t, ctx, ns, svc, seen)
		trusting := 0
		for _, n := range nodes.Items {
			if sample(m, "connected_registry_node_trust", "node", n.Name) == 1 && sample(m, "connected_registry_node_trust_ignored", "node", n.Name) == 0 {
				trusting++
			}
		}
		return trusting == len(nodes.Items) && sample(m, "connected_registry_trust_nodes_desired") == float64(len(nodes.Items))
	}, 3*time.Minute, 3*time.Second, "every node trusts the registry")

	// A cold pull: every blob comes from the parent, once. This test's host reaches the registry through the
	// Service, whose rules kube-proxy may still be writing.
	_, err = env.WaitServing(ctx)
	require.NoError(t, err)
	before := scrapeMetrics(t, ctx, ns, svc, seen)
	require.EqualValues(t, 1, sample(before, "connected_registry_parent_up"), "the gate's probe reached the parent")
	ref := framework.RegistryHost + "/" + presyncRepository + ":metrics-cold"
	blobs, size, smallest := pullBlobs(t, ctx, ref)
	cold := scrapeMetrics(t, ctx, ns, svc, seen)
	delta := func(after, before map[string]*dto.MetricFamily, name string, kv ...string) float64 {
		return sample(after, name, kv...) - sample(before, name, kv...)
	}
	t.Logf("cold pull of %d blobs, %d bytes: gate started %v, shared %v, bytes %v; registry misses %v, hits %v",
		blobs, size, delta(cold, before, "connected_registry_parent_fetches_total", "result", "started"),
		delta(cold, before, "connected_registry_parent_fetches_total", "result", "shared"),
		delta(cold, before, "connected_registry_parent_bytes_total"),
		delta(cold, before, "registry_proxy_misses_total", "type", "blob"), delta(cold, before, "registry_proxy_hits_total", "type", "blob"))
	require.EqualValues(t, blobs, delta(cold, before, "connected_registry_parent_fetches_total", "result", "started"))
	require.Zero(t, delta(cold, before, "connected_registry_parent_fetches_total", "result", "failed"))
	require.EqualValues(t, blobs, delta(cold, before, "registry_proxy_misses_total", "type", "blob"))
	require.GreaterOrEqual(t, delta(cold, before, "connected_registry_parent_bytes_total"), float64(size))
	require.GreaterOrEqual(t, delta(cold, before, "registry_proxy_pushed_bytes_total", "type", "blob"), float64(size))

	// A warm pull: the cache answers; no blob comes from the parent.
	_, _, _ = pullBlobs(t, ctx, ref)
	warm := scrapeMetrics(t, ctx, ns, svc, seen)
	t.Logf("warm pull: gate started %v, bytes %v; registry hits %v",
		delta(warm, cold, "connected_registry_parent_fetches_total", "result", "started"), delta(warm, cold, "connected_registry_parent_bytes_total"),
		delta(warm, cold, "registry_proxy_hits_total", "type", "blob"))
	require.Zero(t, delta(warm, cold, "connected_registry_parent_fetches_total", "result", "started"))
	require.Less(t, delta(warm, cold, "connected_registry_parent_bytes_total"), float64(smallest), "no blob came from the parent again")
	require.EqualValues(t, blobs, delta(warm, cold, "registry_proxy_hits_total", "type", "blob"))
	require.Positive(t, sample(warm, "connected_registry_cache_capacity_bytes"))
	require.Positive(t, sample(warm, "connected_registry_cache_used_bytes"))
	require.Greater(t, sample(warm, "connected_registry_certificate_expiry_timestamp_seconds", "certificate", "serving"), float64(time.Now().Unix()))

	// A pre-sync run, started from the CronJob: its repository shows in the sync metrics.
	cronJob, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, release+"-connected-registry-sync", metav1.GetOptions{})
	require.NoError(t, err)
	_, err = env.Client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "sync-now", Namespace: ns, Labels: cronJob.Spec.JobTemplate.Labels},
		Spec:       cronJob.Spec.JobTemplate.Spec,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitSynced(t, ctx, ns, release+"-connected-registry-sync-status", presyncRepository, "metrics-sync", 3*time.Minute)
	synced := scrapeMetrics(t, ctx, ns, svc, seen)
	require.Greater(t, sample(synced, "connected_registry_sync_last_success_timestamp_seconds", "repository", presyncRepository), float64(start.Unix()))
	require.Positive(t, sample(synced, "connected_registry_sync_bytes", "repository", presyncRepository))
	require.Zero(t, sample(synced, "connected_registry_sync_consecutive_failures", "repository", presyncRepository))

	// The parent stops: the gate's probe finds it gone.
	env.StopParent()
	parentUp := false
	t.Cleanup(func() {
		if !parentUp {
			require.NoError(t, env.StartParentAgain(context.Background()))
		}
	})
	stopped := time.Now()
	require.Eventually(t, func() bool {
		return sample(scrapeMetrics(t, ctx, ns, svc, seen), "connected_registry_parent_up") == 0
	}, 2*time.Minute, 2*time.Second, "parent_up turns 0 with the parent stopped")
	t.Logf("parent_up 0 %s after the parent stopped", time.Since(stopped).Round(time.Second))
	require.NoError(t, env.StartParentAgain(ctx))
	parentUp = true

	// Every metric the dashboard and the alerts name was seen.
	named := chartMetricNames(t)
	var missing []string
	for _, n := range named {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	require.Empty(t, missing, "the dashboard or the alerts name metrics nobody exported; seen: %v", keys(seen))
	t.Logf("all %d metrics the dashboard and the alerts name were scraped", len(named))
}

// metricName finds the metric names in PromQL: ours and Distribution's.
var metricName = regexp.MustCompile(`\b(connected_registry_[a-z_]+|registry_[a-z_]+_total)\b`)

// chartMetricNames are the metrics the chart's dashboard queries and alert rules name.
func chartMetricNames(t *testing.T) []string {
	t.Helper()
	var exprs []string
	dash, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "dashboards", "connected-registry.json"))
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(dash, &d))
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	res, err := chartrender.Render(chartrender.Options{
		Values: map[string]any{"connectionString": env.ConnectionString(), "service": map[string]any{"clusterIP": framework.ClusterIP},
			"metrics": map[string]any{"enabled": true, "prometheusRule": map[string]any{"enabled": true}}},
		APIVersions: []string{chartrender.CertManagerAPIVersion, "monitoring.coreos.com/v1/PrometheusRule"},
	})
	require.NoError(t, err)
	rules := res.OfKind("PrometheusRule")
	require.Len(t, rules, 1)
	for _, g := range rules[0].Object["spec"].(map[string]any)["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			exprs = append(exprs, fmt.Sprint(r.(map[string]any)["expr"]))
		}
	}
	set := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			set[m] = true
		}
	}
	require.NotEmpty(t, set)
	return keys(set)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
