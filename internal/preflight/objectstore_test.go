package preflight_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/preflight"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// TestObjectStoreCheck runs the object-storage check against a real Azurite (ci/azurite.sh installs it), with
// the credentials Secret in a fake API server.
func TestObjectStoreCheck(t *testing.T) {
	t.Parallel()
	bin := testenv.AzuriteBin(chartrender.RepoRoot())
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: run bash ci/azurite.sh", bin)
		}
		t.Skipf("%s is missing: run bash ci/azurite.sh", bin)
	}
	az, err := testenv.StartAzurite(context.Background(), bin, "127.0.0.1", t.TempDir(), nil)
	require.NoError(t, err)
	t.Cleanup(az.Stop)

	secret := func(data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "site-blob", Namespace: ns}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	azure := func(container string, create bool) func(*preflight.Config) {
		return func(c *preflight.Config) {
			c.Storage = preflight.ObjectStore{Type: preflight.StorageAzure, CreateIfMissing: create, CredentialsSecret: "site-blob",
				AzureAccountName: az.Account, AzureContainer: container, AzureServiceURL: az.Endpoint, AzureAccountKeyKey: "accountkey"}
		}
	}
	where := `Azure Blob container "%s" of account "devstoreaccount1" at ` + az.Endpoint
	for _, tc := range []struct {
		name         string
		secret       *corev1.Secret
		cfg          func(*preflight.Config)
		status       preflight.Status
		want         string
		noVerdictHas string
	}{
		{
			name:   "a missing container should be created and probed",
			secret: secret(map[string]string{"accountkey": az.Key}),
			cfg:    azure("made-by-preflight", true),
			status: preflight.OK,
			want:   "Azure Blob container \"made-by-preflight\" of account \"devstoreaccount1\" at " + az.Endpoint + ": created it; wrote, read back and deleted a probe object",
		},
		{
			name:   "a missing container without storage.createIfMissing should fail saying how to create it",
			secret: secret(map[string]string{"accountkey": az.Key}),
			cfg:    azure("not-made", false),
			status: preflight.Fail,
			want:   "the cache's container or bucket does not exist: " + fmt.Sprintf(where, "not-made") + "; create it (az storage container create --name not-made --account-name devstoreaccount1 --auth-mode key), or set storage.createIfMissing=true to let the preflight create it",
		},
		{
			name:   "a Secret without the account key's key should fail naming the key and the value that names it",
			secret: secret(map[string]string{"key": az.Key}),
			cfg:    azure("x-key", true),
			status: preflight.Fail,
			want:   `storage.azure.credentialsSecret connected-registry/site-blob has no key "accountkey" (or it is empty): add it, or name the key that holds it in storage.azure.accountKeyKey`,
		},
		{
			name:   "a missing Secret should fail naming the value",
			cfg:    azure("no-secret", true),
			status: preflight.Fail,
			want:   "storage.azure.credentialsSecret connected-registry/site-blob does not exist: create it with the store's credentials before installing",
		},
		{
			name:         "a wrong account key should fail without showing it",
			secret:       secret(map[string]string{"accountkey": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5"}),
			cfg:          azure("wrong-key", true),
			status:       preflight.Fail,
			want:         "cannot reach " + fmt.Sprintf(where, "wrong-key") + ": the blob service answered 403 AuthorizationFailure; check storage.azure.accountName and storage.azure.serviceURL and the credentials in storage.azure.credentialsSecret",
			noVerdictHas: "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5",
		},
		{
			name:   "storage.type=pvc should pass without a store",
			cfg:    func(c *preflight.Config) { c.Storage.Type = preflight.StoragePVC },
			status: preflight.OK,
			want:   "storage.type=pvc: the cache is on the release's volume",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			tc.cfg(&cfg)
			objects := append(defaultObjects(), inputSecret(map[string]string{"connectionString": goodCS}))
			if tc.secret != nil {
				objects = append(objects, tc.secret)
			}
			r := run(t, cluster{objects: objects}, cfg, "object-storage")
			require.Equal(t, tc.want, r.Message)
			require.Equal(t, tc.status, r.Status)
			require.NotContains(t, r.Message, az.Key)
			if tc.noVerdictHas != "" {
				require.NotContains(t, r.Message, tc.noVerdictHas)
			}
		})
	}
}
