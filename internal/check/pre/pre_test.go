package pre_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/check/pre"
	"github.com/connected-registry/connected-registry/internal/preflight"
)

func TestParseArgs(t *testing.T) {
	t.Parallel()
	cfg, err := pre.ParseArgs([]string{"preflight", "--namespace=edge", "--upgrade=true", "--service=cr-connected-registry", "--cluster-ip=10.96.0.50",
		"--dns=a,b", "--tls-source=secret", "--tls-secret=site-tls", "--registry-node-selector=site=edge", "--log-level=debug", "--timeout=90s"})
	require.NoError(t, err)
	require.Equal(t, preflight.Config{Namespace: "edge", Upgrade: true, Service: "cr-connected-registry", ClusterIP: "10.96.0.50",
		DNSNames: []string{"a", "b"}, TLSSource: "secret", TLSSecret: "site-tls", KeyAlgorithm: "ECDSA", KeySize: 256,
		TrustDistribution: true, RegistryNodeSelector: []string{"site=edge"},
		Storage: preflight.ObjectStore{Type: preflight.StoragePVC, CreateIfMissing: true, AzureRealm: "core.windows.net",
			AzureAccountKeyKey: "accountkey", S3Region: "us-east-1", S3AccessKeyKey: "accesskey", S3SecretKeyKey: "secretkey"}}, cfg)

	_, err = pre.ParseArgs([]string{"certgen", "--namespace=edge"})
	require.EqualError(t, err, `the rendered preflight Job does not run the preflight command (args "certgen --namespace=edge")`)
	_, err = pre.ParseArgs([]string{"preflight", "--no-such-flag=1"})
	require.EqualError(t, err, "reading the rendered preflight Job's args: flag provided but not defined: -no-such-flag")
}

// TestValuesMergeAsHelmDoes: files in order, the protected-settings JSON with its flat keys, then --set,
// --set-string and --set-file on top.
func TestValuesMergeAsHelmDoes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	site := filepath.Join(dir, "site.yaml")
	require.NoError(t, os.WriteFile(site, []byte("service:\n  clusterIP: 10.96.0.50\npvc:\n  storageRequest: 10Gi\n"), 0o600))
	protected := filepath.Join(dir, "protected.json")
	require.NoError(t, os.WriteFile(protected, []byte(`{"tls.crt": "Y3J0", "connectionString": "cs"}`), 0o600))
	keyFile := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(keyFile, []byte("a-key"), 0o600))
	vals, err := pre.Values{Files: []string{site, protected}, Set: []string{"pvc.storageRequest=20Gi"}, SetString: []string{"logLevel=1"},
		SetFile: []string{"tls\\.key=" + keyFile}}.Merge()
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"service":          map[string]any{"clusterIP": "10.96.0.50"},
		"pvc":              map[string]any{"storageRequest": "20Gi"},
		"tls.crt":          "Y3J0",
		"tls.key":          "a-key",
		"connectionString": "cs",
		"logLevel":         "1",
	}, vals)
}
