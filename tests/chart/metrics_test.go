package chart_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

const (
	serviceMonitorAPI = "monitoring.coreos.com/v1/ServiceMonitor"
	prometheusRuleAPI = "monitoring.coreos.com/v1/PrometheusRule"
)

// metricsOn are base values with metrics and extra values merged in.
func metricsOn(extra map[string]any) map[string]any {
	return deepMerge(with(map[string]any{"metrics": map[string]any{"enabled": true}}), extra)
}

// flagsOf is the --flag=value arguments of a container.
func flagsOf(c map[string]any) map[string]string {
	out := map[string]string{}
	for _, a := range c["args"].([]any) {
		k, v, _ := strings.Cut(a.(string), "=")
		out[k] = v
	}
	return out
}

func portsOf(c map[string]any) map[string]float64 {
	out := map[string]float64{}
	ps, _ := c["ports"].([]any)
	for _, p := range ps {
		m := p.(map[string]any)
		out[m["name"].(string)] = m["containerPort"].(float64)
	}
	return out
}

func TestMetricsOffByDefault(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(nil), chartrender.CertManagerAPIVersion, serviceMonitorAPI, prometheusRuleAPI)
	require.NoError(t, err)
	_, ok := res.Find("Service", "cr-connected-registry-metrics")
	require.False(t, ok)
	require.Empty(t, res.OfKind("ServiceMonitor"))
	require.Empty(t, res.OfKind("PrometheusRule"))
	http := registryConfig(t, res)["http"].(map[string]any)
	require.NotContains(t, http, "debug", "no debug server without metrics")
	d, _ := res.Find("Deployment", "cr-connected-registry")
	require.NotContains(t, flagsOf(container(t, d, "tls-reloader")), "--metrics-addr")
	require.NotContains(t, flagsOf(container(t, d, "parent-gate")), "--metrics-addr")
}

func TestMetricsRender(t *testing.T) {
	t.Parallel()
	for name, vals := range map[string]map[string]any{
		"nested": metricsOn(nil),
		"flat":   with(map[string]any{"metrics.enabled": true}),
	} {
		t.Run(name+" metrics.enabled should serve the registry's metrics on its loopback only, and every metrics port on the metrics Service", func(t *testing.T) {
			t.Parallel()
			res, err := render(t, vals, chartrender.CertManagerAPIVersion)
			require.NoError(t, err)

			debug := registryConfig(t, res)["http"].(map[string]any)["debug"].(map[string]any)
			require.Equal(t, "127.0.0.1:5101", debug["addr"], "the debug server (pprof, expvar) stays on the pod's loopback")
			require.Equal(t, map[string]any{"enabled": true, "path": "/metrics"}, debug["prometheus"])

			d, _ := res.Find("Deployment", "cr-connected-registry")
			reloader := container(t, d, "tls-reloader")
			require.Equal(t, ":9090", flagsOf(reloader)["--metrics-addr"])
			require.Equal(t, "registry=http://127.0.0.1:5101/metrics", flagsOf(reloader)["--proxy-metrics"])
			require.Equal(t, map[string]float64{"metrics": 9090}, portsOf(reloader))
			gate := container(t, d, "parent-gate")
			require.Equal(t, ":9091", flagsOf(gate)["--metrics-addr"])
			require.Equal(t, "/var/lib/registry", flagsOf(gate)["--cache-dir"])
			require.Equal(t, map[string]float64{"gate-metrics": 9091}, portsOf(gate))
			require.Contains(t, gate["volumeMounts"], map[string]any{"name": "data", "mountPath": "/var/lib/registry", "readOnly": true},
				"the gate reads the cache volume's use, read-only")
			for _, c := range []string{"registry", "tls-reloader", "parent-gate"} {
				for name, port := range portsOf(container(t, d, c)) {
					require.NotEqual(t, 5101.0, port, "%s exposes the debug port as %s", c, name)
				}
			}

			svc, ok := res.Find("Service", "cr-connected-registry-metrics")
			require.True(t, ok)
			spec := svc.Object["spec"].(map[string]any)
			require.NotContains(t, spec, "clusterIP", "the metrics Service takes any address: the fixed one is the registry's")
			require.Equal(t, []any{
				map[string]any{"name": "metrics", "port": 9090.0, "targetPort": "metrics", "protocol": "TCP"},
				map[string]any{"name": "gate-metrics", "port": 9091.0, "targetPort": "gate-metrics", "protocol": "TCP"},
			}, spec["ports"])
			require.Equal(t, "registry", spec["selector"].(map[string]any)["app.kubernetes.io/component"])
			registrySvc, _ := res.Find("Service", "cr-connected-registry")
			require.Len(t, registrySvc.Object["spec"].(map[string]any)["ports"], 1, "the registry Service keeps only its registry port")
			require.Contains(t, res.Notes, "kubectl get --raw /api/v1/namespaces/connected-registry/services/cr-connected-registry-metrics:9090/proxy/metrics",
				"the NOTES say where the metrics are")
			require.Empty(t, res.OfKind("ServiceMonitor"), "no ServiceMonitor where the cluster does not serve its API")
			require.Empty(t, res.OfKind("PrometheusRule"))
		})
	}
}

func TestMetricsWithRegistryHTTPSyncAndACR(t *testing.T) {
	t.Parallel()
	t.Run("registry-http should get a debug port of its own, proxied beside the registry's", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, metricsOn(map[string]any{"httpEnabled": true}), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		d, _ := res.Find("Deployment", "cr-connected-registry")
		require.Contains(t, container(t, d, "registry-http")["env"], map[string]any{"name": "REGISTRY_HTTP_DEBUG_ADDR", "value": "127.0.0.1:5102"})
		require.Equal(t, "registry=http://127.0.0.1:5101/metrics,registry-http=http://127.0.0.1:5102/metrics",
			flagsOf(container(t, d, "tls-reloader"))["--proxy-metrics"])
	})
	t.Run("with pre-sync the tls-reloader should read the sync status ConfigMap, by name", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, deepMerge(syncValues(nil), map[string]any{"metrics": map[string]any{"enabled": true}}), chartrender.CertManagerAPIVersion)
		require.NoError(t, err)
		d, _ := res.Find("Deployment", "cr-connected-registry")
		require.Equal(t, "cr-connected-registry-sync-status", flagsOf(container(t, d, "tls-reloader"))["--sync-status-configmap"])
		role, ok := res.Find("Role", "cr-connected-registry")
		require.True(t, ok)
		require.Contains(t, role.Object["rules"], map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"},
			"resourceNames": []any{"cr-connected-registry-sync-status"}, "verbs": []any{"get"}})
	})
	t.Run("Microsoft's engine has no Distribution debug port and no gate: only the tls-reloader's metrics", func(t *testing.T) {
		t.Parallel()
		res, err := render(t, metricsOn(map[string]any{"registry": map[string]any{"engine": "acr"}, "metrics.serviceMonitor.enabled": true}), chartrender.CertManagerAPIVersion, serviceMonitorAPI)
		require.NoError(t, err)
		d, _ := res.Find("Deployment", "cr-connected-registry")
		require.NotContains(t, flagsOf(container(t, d, "tls-reloader")), "--proxy-metrics")
		svc, _ := res.Find("Service", "cr-connected-registry-metrics")
		require.Len(t, svc.Object["spec"].(map[string]any)["ports"], 1)
		sm := res.OfKind("ServiceMonitor")
		require.Len(t, sm, 1)
		require.Equal(t, []any{map[string]any{"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}},
			sm[0].Object["spec"].(map[string]any)["endpoints"])
	})
}

func TestServiceMonitor(t *testing.T) {
	t.Parallel()
	res, err := render(t, metricsOn(map[string]any{"httpEnabled": true, "metrics": map[string]any{"serviceMonitor": map[string]any{
		"enabled": true, "labels": map[string]any{"release": "prometheus"}, "interval": "1m", "scrapeTimeout": "20s"}}}),
		chartrender.CertManagerAPIVersion, serviceMonitorAPI)
	require.NoError(t, err)
	sm, ok := res.Find("ServiceMonitor", "cr-connected-registry")
	require.True(t, ok)
	require.Equal(t, "prometheus", sm.Object["metadata"].(map[string]any)["labels"].(map[string]any)["release"])
	spec := sm.Object["spec"].(map[string]any)
	svc, _ := res.Find("Service", "cr-connected-registry-metrics")
	svcLabels := svc.Object["metadata"].(map[string]any)["labels"].(map[string]any)
	for k, v := range spec["selector"].(map[string]any)["matchLabels"].(map[string]any) {
		require.Equal(t, v, svcLabels[k], "the ServiceMonitor selects the metrics Service: %s", k)
	}
	registrySvc, _ := res.Find("Service", "cr-connected-registry")
	require.NotEqual(t, "metrics", registrySvc.Object["metadata"].(map[string]any)["labels"].(map[string]any)["app.kubernetes.io/component"],
		"and not the registry Service")
	var endpoints []string
	for _, e := range spec["endpoints"].([]any) {
		m := e.(map[string]any)
		require.Equal(t, "1m", m["interval"])
		require.Equal(t, "20s", m["scrapeTimeout"])
		endpoints = append(endpoints, m["port"].(string)+m["path"].(string))
	}
	require.Equal(t, []string{"metrics/metrics", "metrics/metrics/registry", "metrics/metrics/registry-http", "gate-metrics/metrics"}, endpoints)
}

func TestPrometheusRuleThresholdsFromValues(t *testing.T) {
	t.Parallel()
	res, err := render(t, metricsOn(map[string]any{"metrics.prometheusRule.enabled": true, "metrics.prometheusRule.parentUnreachableFor": "5m",
		"metrics.prometheusRule.cacheUsedPercent": 90, "metrics.prometheusRule.certificateExpiryDays": 30, "metrics.prometheusRule.syncFailures": 3}),
		chartrender.CertManagerAPIVersion, prometheusRuleAPI)
	require.NoError(t, err)
	pr, ok := res.Find("PrometheusRule", "cr-connected-registry")
	require.True(t, ok)
	rules := map[string]map[string]any{}
	for _, g := range pr.Object["spec"].(map[string]any)["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			m := r.(map[string]any)
			rules[m["alert"].(string)] = m
		}
	}
	require.Len(t, rules, 5)
	require.Equal(t, "5m", rules["ConnectedRegistryParentUnreachable"]["for"])
	require.Contains(t, rules["ConnectedRegistryCacheAlmostFull"]["expr"], "> 90")
	require.Contains(t, rules["ConnectedRegistryCertificateExpiring"]["expr"], "< 2592000")
	require.Contains(t, rules["ConnectedRegistrySyncFailing"]["expr"], ">= 3")
	require.Contains(t, rules, "ConnectedRegistryNodeWithoutTrust")
	_, err = render(t, metricsOn(map[string]any{"metrics.prometheusRule.enabled": true}), chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
}

func TestDashboardConfigMap(t *testing.T) {
	t.Parallel()
	res, err := render(t, metricsOn(map[string]any{"metrics": map[string]any{"dashboard": map[string]any{"enabled": true}}}), chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	cm, ok := res.Find("ConfigMap", "cr-connected-registry-dashboard")
	require.True(t, ok)
	require.Equal(t, "1", cm.Object["metadata"].(map[string]any)["labels"].(map[string]any)["grafana_dashboard"], "the Grafana sidecar's usual label")
	var dash struct {
		Title  string           `json:"title"`
		Panels []map[string]any `json:"panels"`
	}
	require.NoError(t, json.Unmarshal([]byte(cm.Object["data"].(map[string]any)["connected-registry.json"].(string)), &dash))
	require.Equal(t, "Connected registry", dash.Title)
	require.NotEmpty(t, dash.Panels)

	res, err = render(t, metricsOn(map[string]any{"metrics.dashboard.enabled": true, "metrics.dashboard.labels": map[string]any{"dashboards": "registry"}}), chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	cm, _ = res.Find("ConfigMap", "cr-connected-registry-dashboard")
	require.Equal(t, map[string]any{"dashboards": "registry"}, onlyExtraLabels(cm.Object["metadata"].(map[string]any)["labels"].(map[string]any)),
		"the label is the value's, for a sidecar configured with another")
}

// onlyExtraLabels drops the chart's own labels.
func onlyExtraLabels(l map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range l {
		if !strings.HasPrefix(k, "app.kubernetes.io/") && k != "helm.sh/chart" {
			out[k] = v
		}
	}
	return out
}

func TestNetworkPolicyAdmitsTheMetricsPorts(t *testing.T) {
	t.Parallel()
	res, err := render(t, metricsOn(map[string]any{"networkPolicy": map[string]any{"enabled": true, "nodeCIDRs": []any{"10.0.0.0/16"}}}), chartrender.CertManagerAPIVersion)
	require.NoError(t, err)
	np, ok := res.Find("NetworkPolicy", "cr-connected-registry")
	require.True(t, ok)
	pods := np.Object["spec"].(map[string]any)["ingress"].([]any)[0].(map[string]any)
	require.Equal(t, []any{
		map[string]any{"port": 5443.0, "protocol": "TCP"},
		map[string]any{"port": 9090.0, "protocol": "TCP"},
		map[string]any{"port": 9091.0, "protocol": "TCP"},
	}, pods["ports"], "Prometheus, in any namespace, reaches both metrics ports")
}

// renderedRules are the alerting rules of the PrometheusRule as a promtool rules file.
func renderedRules(t *testing.T, vals map[string]any) []byte {
	t.Helper()
	res, err := render(t, vals, chartrender.CertManagerAPIVersion, prometheusRuleAPI)
	require.NoError(t, err)
	pr, ok := res.Find("PrometheusRule", "cr-connected-registry")
	require.True(t, ok)
	out, err := yaml.Marshal(pr.Object["spec"])
	require.NoError(t, err)
	return out
}
