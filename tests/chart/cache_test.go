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
	cacheCronJob = "cr-connected-registry-cache-evict"
	cachePulls   = "cr-connected-registry-cache-pulls"
	cacheStatus  = "cr-connected-registry-cache-status"
	cacheConfig  = "cr-connected-registry-cache-evict-config"
)

// cacheOn bounds the cache and merges extra values in.
func cacheOn(extra map[string]any) map[string]any {
	return deepMerge(with(map[string]any{"registry": map[string]any{"cache": map[string]any{"maxSize": "400Gi"}}}), extra)
}

func cacheJobSpec(t *testing.T, res *chartrender.Result) map[string]any {
	t.Helper()
	cj, ok := res.Find("CronJob", cacheCronJob)
	require.True(t, ok, "no CronJob %s", cacheCronJob)
	return cj.Object["spec"].(map[string]any)["jobTemplate"].(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func argsOf(c map[string]any) []string {
	var out []string
	for _, a := range c["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// TestCacheUnboundedByDefault: without registry.cache.maxSize nothing of the eviction renders, and the registry
// keeps its blob descriptor cache and sends no notifications.
func TestCacheUnboundedByDefault(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(nil))
	require.NoError(t, err)
	for _, kind := range []string{"CronJob", "ConfigMap", "Role", "ServiceAccount"} {
		for _, name := range []string{cacheCronJob, cachePulls, cacheStatus, cacheConfig} {
			_, ok := res.Find(kind, name)
			require.False(t, ok, "%s %s renders without registry.cache.maxSize", kind, name)
		}
	}
	cfg := registryConfig(t, res)
	require.NotContains(t, cfg, "notifications")
	require.Equal(t, map[string]any{"blobdescriptor": "inmemory"}, cfg["storage"].(map[string]any)["cache"])
	inits, _ := namedList(podSpec(t, res)["initContainers"])
	for _, a := range argsOf(inits["parent-gate"]) {
		require.NotContains(t, a, "--pulls-configmap")
		require.NotContains(t, a, "--cache-max-size")
	}
}

// TestGateWatchesTheCacheVolume: the parent gate mounts the cache volume read-only, to refuse a blob the volume
// cannot hold and to name the values that fix it.
func TestGateWatchesTheCacheVolume(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(map[string]any{"pvc": map[string]any{"storageRequest": "200Gi"}}))
	require.NoError(t, err)
	inits, _ := namedList(podSpec(t, res)["initContainers"])
	gate := inits["parent-gate"]
	require.Subset(t, argsOf(gate), []string{"--cache-dir=/var/lib/registry", "--volume-size=200Gi"})
	require.Contains(t, gate["volumeMounts"], map[string]any{"name": "data", "mountPath": "/var/lib/registry", "readOnly": true})

	res, err = render(t, cacheOn(nil))
	require.NoError(t, err)
	inits, _ = namedList(podSpec(t, res)["initContainers"])
	require.Contains(t, argsOf(inits["parent-gate"]), "--cache-max-size=400Gi")
}

// TestCacheBoundedRender: with registry.cache.maxSize, the registry notifies the parent gate of every manifest
// pulled, the gate keeps the records in their ConfigMap (and may write only it), the registry drops its blob
// descriptor cache (the eviction collects blobs behind its back), and the CronJob's pod runs, in order, its own
// registry on the cache's storage with delete enabled, evict, Distribution's garbage-collect and the measure,
// on the registry pod's node.
func TestCacheBoundedRender(t *testing.T) {
	t.Parallel()
	res, err := render(t, cacheOn(map[string]any{"registry": map[string]any{"cache": map[string]any{"schedule": "15 1 * * *"}}}))
	require.NoError(t, err)

	cfg := registryConfig(t, res)
	require.NotContains(t, cfg["storage"].(map[string]any), "cache", "no blob descriptor cache with eviction")
	endpoints := cfg["notifications"].(map[string]any)["endpoints"].([]any)
	require.Len(t, endpoints, 1)
	ep := endpoints[0].(map[string]any)
	require.Equal(t, "http://127.0.0.1:5128/_gate/events", ep["url"])
	require.Equal(t, []any{"application/octet-stream"}, ep["ignoredmediatypes"], "blob pulls are not sent")

	inits, _ := namedList(podSpec(t, res)["initContainers"])
	gate := inits["parent-gate"]
	require.Contains(t, argsOf(gate), "--pulls-configmap="+cachePulls)
	require.Contains(t, gate["volumeMounts"], map[string]any{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true})
	role, ok := res.Find("Role", "cr-connected-registry")
	require.True(t, ok)
	require.Contains(t, role.Object["rules"], map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"},
		"resourceNames": []any{cachePulls}, "verbs": []any{"get", "update"}})

	cj, _ := res.Find("CronJob", cacheCronJob)
	require.Equal(t, "15 1 * * *", cj.Object["spec"].(map[string]any)["schedule"])
	require.Equal(t, "Forbid", cj.Object["spec"].(map[string]any)["concurrencyPolicy"])
	spec := cacheJobSpec(t, res)
	jobInits, order := namedList(spec["initContainers"])
	require.Equal(t, []string{"registry", "evict", "garbage-collect"}, order)
	_, mains := namedList(spec["containers"])
	require.Equal(t, []string{"measure"}, mains)
	require.Equal(t, "Always", jobInits["registry"]["restartPolicy"], "the Job's registry is a native sidecar")
	require.Equal(t, []string{"serve", "/etc/distribution/config.yml"}, argsOf(jobInits["registry"]))
	require.Equal(t, []string{"garbage-collect", "/etc/distribution/config.yml"}, argsOf(jobInits["garbage-collect"]))
	require.Contains(t, argsOf(jobInits["evict"]), "--max-size=400Gi")
	require.Contains(t, argsOf(jobInits["evict"]), "--pulls-configmap="+cachePulls)
	require.Contains(t, argsOf(jobInits["evict"]), "--status-configmap="+cacheStatus)
	require.Contains(t, argsOf(jobInits["evict"]), "--registry=http://127.0.0.1:5002")
	for _, a := range argsOf(jobInits["evict"]) {
		require.NotContains(t, a, "--keep-repositories", "no pre-sync, nothing kept")
	}
	require.Contains(t, argsOf(mains2(t, spec)), "--measure")
	affinity := spec["affinity"].(map[string]any)["podAffinity"].(map[string]any)["requiredDuringSchedulingIgnoredDuringExecution"].([]any)[0].(map[string]any)
	require.Equal(t, "kubernetes.io/hostname", affinity["topologyKey"], "the ReadWriteOnce claim is mounted on the registry's node")
	require.Equal(t, "registry", affinity["labelSelector"].(map[string]any)["matchLabels"].(map[string]any)["app.kubernetes.io/component"])

	// The Job's registry: the registry's storage, delete enabled, no proxy, not read-only, plain HTTP on loopback.
	cm, ok := res.Find("ConfigMap", cacheConfig)
	require.True(t, ok)
	var job map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Object["data"].(map[string]any)["config.yml"].(string)), &job))
	require.Equal(t, map[string]any{
		"filesystem": map[string]any{"rootdirectory": "/var/lib/registry"},
		"delete":     map[string]any{"enabled": true},
	}, job["storage"])
	require.NotContains(t, job, "proxy")
	require.Equal(t, map[string]any{"addr": "127.0.0.1:5002", "net": "tcp"}, job["http"])

	jr, ok := res.Find("Role", cacheCronJob)
	require.True(t, ok)
	require.Equal(t, []any{
		map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"}, "resourceNames": []any{cachePulls}, "verbs": []any{"get"}},
		map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"}, "resourceNames": []any{cacheStatus}, "verbs": []any{"get", "update"}},
	}, jr.Object["rules"])
	for _, name := range []string{cachePulls, cacheStatus} {
		d, ok := res.Find("ConfigMap", name)
		require.True(t, ok)
		require.NotContains(t, d.Object, "data", "ConfigMap %s renders empty, so upgrades keep what was written", name)
	}
}

func mains2(t *testing.T, spec map[string]any) map[string]any {
	t.Helper()
	m, _ := namedList(spec["containers"])
	return m["measure"]
}

// TestCacheKeepsWhatPreSyncSelects: with pre-sync on, the eviction is given sync.repositories as they are.
func TestCacheKeepsWhatPreSyncSelects(t *testing.T) {
	t.Parallel()
	repos := []any{map[string]any{"name": "hello-world", "tags": []any{"latest"}}, map[string]any{"name": "site/app", "semver": "~1.2"}}
	res, err := render(t, cacheOn(map[string]any{"sync": map[string]any{"enabled": true, "repositories": repos}}))
	require.NoError(t, err)
	jobInits, _ := namedList(cacheJobSpec(t, res)["initContainers"])
	var keep string
	for _, a := range argsOf(jobInits["evict"]) {
		if v, ok := strings.CutPrefix(a, "--keep-repositories="); ok {
			keep = v
		}
	}
	var got []any
	require.NoError(t, json.Unmarshal([]byte(keep), &got))
	require.Equal(t, repos, got)
}

func TestCacheRenderErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"a size that is not a quantity should fail naming the key",
			cacheOn(map[string]any{"registry": map[string]any{"cache": map[string]any{"maxSize": "lots"}}}),
			"/registry/cache/maxSize"},
		{"a zero size should fail naming the key and the fix",
			cacheOn(map[string]any{"registry": map[string]any{"cache": map[string]any{"maxSize": "0Gi"}}}),
			`registry.cache.maxSize "0Gi" is zero`},
		{"the acr engine should fail",
			cacheOn(map[string]any{"registry": map[string]any{"engine": "acr"}}),
			"registry.cache.maxSize needs registry.engine=distribution"},
		{"no parent gate should fail naming the value that brings it back",
			cacheOn(map[string]any{"registry": map[string]any{"parent": map[string]any{"responseTimeout": "0s"}}}),
			"registry.cache.maxSize needs the parent gate, which records the pulls the eviction orders images by: set registry.parent.responseTimeout"},
		{"a bad schedule should fail naming the key",
			cacheOn(map[string]any{"registry": map[string]any{"cache": map[string]any{"schedule": "daily"}}}),
			`registry.cache.schedule "daily" is not a cron schedule`},
		{"a misspelt cache key should fail the schema",
			cacheOn(map[string]any{"registry": map[string]any{"cache": map[string]any{"maxsize": "1Gi"}}}),
			"maxsize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.vals)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestCacheFlatKeys: the Arc extension's flat keys mean the same as nested ones.
func TestCacheFlatKeys(t *testing.T) {
	t.Parallel()
	nested, err := render(t, cacheOn(map[string]any{"registry": map[string]any{"cache": map[string]any{"schedule": "0 4 * * *"}}}))
	require.NoError(t, err)
	flat, err := render(t, with(map[string]any{"registry.cache.maxSize": "400Gi", "registry.cache.schedule": "0 4 * * *"}))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(nested.YAML()), strings.TrimSpace(flat.YAML()))
}
