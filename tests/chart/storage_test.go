package chart_test

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// azureReplicas are values of three replicas on an Azure Blob container.
func azureReplicas(extra map[string]any) map[string]any {
	v := with(map[string]any{
		"replicas": 3,
		"storage": map[string]any{"type": "azure", "azure": map[string]any{
			"accountName": "siteaccount", "container": "edge-cache", "serviceURL": "http://10.0.0.1:10000/siteaccount",
			"credentialsSecret": "site-blob",
		}},
	})
	for k, val := range extra {
		v[k] = val
	}
	return v
}

func envNamed(t *testing.T, c map[string]any, name string) map[string]any {
	t.Helper()
	for _, e := range c["env"].([]any) {
		if e.(map[string]any)["name"] == name {
			return e.(map[string]any)
		}
	}
	t.Fatalf("container %s has no env %s", c["name"], name)
	return nil
}

func secretRef(name, key string) map[string]any {
	return map[string]any{"secretKeyRef": map[string]any{"name": name, "key": key}}
}

// TestStorageAzureReplicas: three replicas on Azure Blob share the container, take the account key from the
// Secret as an environment variable (never the ConfigMap), never redirect clients to the store, share
// http.secret, spread over nodes, survive a drain one at a time, and route each blob to its owner replica.
func TestStorageAzureReplicas(t *testing.T) {
	t.Parallel()
	res, err := render(t, azureReplicas(map[string]any{"networkPolicy": map[string]any{"enabled": true, "nodeCIDRs": []any{"10.0.0.0/16"}}}))
	require.NoError(t, err)

	storage := registryConfig(t, res)["storage"].(map[string]any)
	require.Equal(t, map[string]any{
		"accountname": "siteaccount", "container": "edge-cache", "realm": "core.windows.net",
		"serviceurl": "http://10.0.0.1:10000/siteaccount", "credentials": map[string]any{"type": "shared_key"},
	}, storage["azure"])
	require.NotContains(t, storage, "filesystem")
	require.Equal(t, map[string]any{"disable": true}, storage["redirect"])
	// No TTL scheduler: its state file in the shared store would be written by every replica (distribution#3251).
	require.Equal(t, "0s", registryConfig(t, res)["proxy"].(map[string]any)["ttl"])

	d, ok := res.Find("Deployment", "cr-connected-registry")
	require.True(t, ok)
	spec := d.Object["spec"].(map[string]any)
	require.EqualValues(t, 3, spec["replicas"])
	require.Equal(t, "RollingUpdate", spec["strategy"].(map[string]any)["type"])
	registry := container(t, d, "registry")
	require.Equal(t, secretRef("site-blob", "accountkey"), envNamed(t, registry, "REGISTRY_STORAGE_AZURE_ACCOUNTKEY")["valueFrom"])
	require.Equal(t, secretRef("cr-connected-registry-shared", "http-secret"), envNamed(t, registry, "REGISTRY_HTTP_SECRET")["valueFrom"])
	pod := podSpec(t, res)
	spread := pod["topologySpreadConstraints"].([]any)
	require.Len(t, spread, 2)
	require.Equal(t, "kubernetes.io/hostname", spread[0].(map[string]any)["topologyKey"])
	vols, _ := namedList(pod["volumes"])
	require.NotContains(t, vols["data"], "persistentVolumeClaim", "the cache is in the container, not on a volume")
	_, ok = res.Find("PersistentVolumeClaim", "cr-connected-registry-data")
	require.False(t, ok, "object storage needs no cache volume")

	pdb, ok := res.Find("PodDisruptionBudget", "cr-connected-registry")
	require.True(t, ok)
	require.EqualValues(t, 1, pdb.Object["spec"].(map[string]any)["maxUnavailable"])

	shared, ok := res.Find("Secret", "cr-connected-registry-shared")
	require.True(t, ok)
	for _, k := range []string{"http-secret", "peer-secret"} {
		b, err := base64.StdEncoding.DecodeString(shared.Object["data"].(map[string]any)[k].(string))
		require.NoError(t, err)
		require.Len(t, b, 48, "%s should be 48 random characters", k)
	}

	peers, ok := res.Find("Service", "cr-connected-registry-peers")
	require.True(t, ok)
	require.Equal(t, "None", peers.Object["spec"].(map[string]any)["clusterIP"])
	_, gate := parentPath(t, res)
	require.Equal(t, "cr-connected-registry-peers.connected-registry.svc", gate["--peers"])
	require.Equal(t, ":5129", gate["--peer-listen"])
	gc := container(t, d, "parent-gate")
	require.Equal(t, map[string]any{"fieldRef": map[string]any{"fieldPath": "status.podIP"}}, envNamed(t, gc, "POD_IP")["valueFrom"])
	require.Equal(t, secretRef("cr-connected-registry-shared", "peer-secret"), envNamed(t, gc, "CONNECTED_REGISTRY_GATE_PEER_SECRET")["valueFrom"])

	np, ok := res.Find("NetworkPolicy", "cr-connected-registry")
	require.True(t, ok)
	require.Contains(t, chartrender.Document(np).Object["spec"].(map[string]any)["ingress"], map[string]any{
		"from":  []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "connected-registry", "app.kubernetes.io/instance": "cr", "app.kubernetes.io/component": "registry"}}}},
		"ports": []any{map[string]any{"port": float64(5129), "protocol": "TCP"}},
	})
}

// TestStorageS3: the s3 driver with an S3-compatible endpoint, its keys from the Secret, given as flat keys as the
// Azure extension's protected settings do.
func TestStorageS3(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(map[string]any{
		"storage.type": "s3", "storage.s3.bucket": "edge-cache", "storage.s3.regionEndpoint": "http://10.0.0.1:9000",
		"storage.s3.forcePathStyle": true, "storage.s3.credentialsSecret": "site-s3", "storage.s3.rootDirectory": "/registry",
	}))
	require.NoError(t, err)
	storage := registryConfig(t, res)["storage"].(map[string]any)
	require.Equal(t, map[string]any{
		"bucket": "edge-cache", "region": "us-east-1", "regionendpoint": "http://10.0.0.1:9000", "secure": false,
		"forcepathstyle": true, "rootdirectory": "/registry",
	}, storage["s3"])
	require.Equal(t, map[string]any{"disable": true}, storage["redirect"])
	d, _ := res.Find("Deployment", "cr-connected-registry")
	registry := container(t, d, "registry")
	require.Equal(t, secretRef("site-s3", "accesskey"), envNamed(t, registry, "REGISTRY_STORAGE_S3_ACCESSKEY")["valueFrom"])
	require.Equal(t, secretRef("site-s3", "secretkey"), envNamed(t, registry, "REGISTRY_STORAGE_S3_SECRETKEY")["valueFrom"])
	// One replica: nothing of the replicas' machinery.
	for _, k := range [][2]string{{"PodDisruptionBudget", "cr-connected-registry"}, {"Secret", "cr-connected-registry-shared"}, {"Service", "cr-connected-registry-peers"}} {
		_, ok := res.Find(k[0], k[1])
		require.False(t, ok, "one replica should render no %s %s", k[0], k[1])
	}
}

// TestStorageReadWriteManyReplicas: replicas on one ReadWriteMany claim keep the filesystem driver and get the same
// sharing as object storage.
func TestStorageReadWriteManyReplicas(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(map[string]any{"replicas": 2, "pvc": map[string]any{"accessMode": "ReadWriteMany", "storageClassName": "nfs"}}))
	require.NoError(t, err)
	storage := registryConfig(t, res)["storage"].(map[string]any)
	require.Equal(t, map[string]any{"rootdirectory": "/var/lib/registry"}, storage["filesystem"])
	require.Equal(t, map[string]any{"disable": true}, storage["redirect"])
	pvc, ok := res.Find("PersistentVolumeClaim", "cr-connected-registry-data")
	require.True(t, ok)
	require.Equal(t, []any{"ReadWriteMany"}, pvc.Object["spec"].(map[string]any)["accessModes"])
}

func TestStorageRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{
			name: "two replicas on a ReadWriteOnce claim should fail naming the keys and the fix",
			vals: with(map[string]any{"replicas": 2}),
			want: "replicas=2 with storage.type=pvc needs pvc.accessMode=ReadWriteMany (got ReadWriteOnce): every replica mounts the one cache volume. Set pvc.accessMode=ReadWriteMany with a storageClassName that provides it (NFS, Azure Files), or use object storage (storage.type=azure or s3), or set replicas=1",
		},
		{
			name: "azure without an account should fail naming the key",
			vals: with(map[string]any{"storage": map[string]any{"type": "azure", "azure": map[string]any{"credentialsSecret": "site-blob"}}}),
			want: "storage.type=azure needs storage.azure.accountName",
		},
		{
			name: "azure without the credentials Secret should fail saying how to make one",
			vals: with(map[string]any{"storage": map[string]any{"type": "azure", "azure": map[string]any{"accountName": "siteaccount"}}}),
			want: "storage.type=azure needs storage.azure.credentialsSecret: an existing Secret whose key accountkey holds the account key (kubectl create secret generic NAME --from-literal=accountkey=...)",
		},
		{
			name: "an azure container name with capitals should fail naming the rule",
			vals: with(map[string]any{"storage": map[string]any{"type": "azure", "azure": map[string]any{"accountName": "a", "credentialsSecret": "s", "container": "Edge"}}}),
			want: `storage.azure.container "Edge" is not a container name`,
		},
		{
			name: "s3 without a bucket should fail naming the key",
			vals: with(map[string]any{"storage.type": "s3", "storage.s3.credentialsSecret": "site-s3"}),
			want: "storage.type=s3 needs storage.s3.bucket",
		},
		{
			name: "s3 without the credentials Secret should fail naming its keys",
			vals: with(map[string]any{"storage.type": "s3", "storage.s3.bucket": "b"}),
			want: "storage.type=s3 needs storage.s3.credentialsSecret: an existing Secret whose keys accesskey and secretkey hold",
		},
		{
			name: "replicas of Microsoft's engine should fail",
			vals: azureReplicas(map[string]any{"registry": map[string]any{"engine": "acr"}}),
			want: "storage.type=azure needs registry.engine=distribution",
		},
		{
			name: "replicas without the parent gate should fail: each would fetch every blob",
			vals: azureReplicas(map[string]any{"registry.parent.responseTimeout": "0s"}),
			want: "replicas=3 needs the parent gate with shared fetches (registry.parent.responseTimeout other than 0s, registry.parent.shareFetches=true)",
		},
		{
			name: "zero replicas should fail the schema",
			vals: with(map[string]any{"replicas": 0}),
			want: "replicas",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.vals)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestReplicasWithMetrics: with several replicas and metrics on, the parent gate declares both its metrics port and
// the port the other replicas' gates reach it on.
func TestReplicasWithMetrics(t *testing.T) {
	t.Parallel()
	res, err := render(t, azureReplicas(map[string]any{"metrics": map[string]any{"enabled": true}}))
	require.NoError(t, err)
	d, ok := res.Find("Deployment", "cr-connected-registry")
	require.True(t, ok)
	require.Equal(t, map[string]float64{"gate-metrics": 9091, "peer": 5129}, portsOf(container(t, d, "parent-gate")))
}
