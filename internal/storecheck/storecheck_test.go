package storecheck_test

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/storecheck"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// need returns bin, or skips the test when it is missing outside CI (in CI, where the Makefile installs it, it
// fails instead).
func need(t *testing.T, bin, how string) string {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: %s", bin, how)
		}
		t.Skipf("%s is missing: %s", bin, how)
	}
	return bin
}

var (
	azuriteOnce sync.Once
	azurite     *testenv.ObjectStore
	azuriteErr  error
)

// sharedAzurite is one Azurite for the package's tests, each in containers of its own.
func sharedAzurite(t *testing.T) *testenv.ObjectStore {
	t.Helper()
	bin := need(t, testenv.AzuriteBin(chartrender.RepoRoot()), "run bash ci/azurite.sh")
	azuriteOnce.Do(func() {
		dir, err := os.MkdirTemp("", "azurite-")
		if err != nil {
			azuriteErr = err
			return
		}
		azurite, azuriteErr = testenv.StartAzurite(context.Background(), bin, "127.0.0.1", dir, nil)
	})
	require.NoError(t, azuriteErr)
	return azurite
}

func TestMain(m *testing.M) {
	code := m.Run()
	azurite.Stop()
	os.Exit(code)
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestAzure(t *testing.T) {
	t.Parallel()
	az := sharedAzurite(t)
	store := func(t *testing.T, container, key string) *storecheck.Azure {
		s, err := storecheck.NewAzure(storecheck.Azure{AccountName: az.Account, AccountKey: key, Container: container, ServiceURL: az.Endpoint})
		require.NoError(t, err)
		return s
	}

	t.Run("a missing container that the check may not create should fail with the command that creates it", func(t *testing.T) {
		t.Parallel()
		_, err := storecheck.Check(t.Context(), store(t, "missing-one", az.Key), storecheck.Options{})
		require.ErrorIs(t, err, storecheck.ErrMissing)
		require.ErrorContains(t, err, `Azure Blob container "missing-one" of account "devstoreaccount1"`)
		require.ErrorContains(t, err, "create it (az storage container create --name missing-one --account-name devstoreaccount1 --auth-mode key), or set storage.createIfMissing=true")
	})

	t.Run("a missing container should be created, then written, read back and deleted; a second check finds it", func(t *testing.T) {
		t.Parallel()
		s := store(t, "created-by-check", az.Key)
		res, err := storecheck.Check(t.Context(), s, storecheck.Options{Create: true, RootDirectory: "/site/cache/"})
		require.NoError(t, err)
		require.True(t, res.Created)
		require.Len(t, res.Steps, 2)
		require.Contains(t, res.Steps[1], "site/cache/_connected-registry/connected-registry-preflight-")
		res, err = storecheck.Check(t.Context(), s, storecheck.Options{Create: true})
		require.NoError(t, err)
		require.False(t, res.Created)
		require.True(t, strings.HasPrefix(res.Steps[0], "reached "))
	})

	t.Run("a wrong account key should fail naming the Secret's value, without the key", func(t *testing.T) {
		t.Parallel()
		wrong := "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
		_, err := storecheck.Check(t.Context(), store(t, "wrong-key", wrong), storecheck.Options{Create: true})
		require.ErrorContains(t, err, "the blob service answered 403 AuthorizationFailure")
		require.ErrorContains(t, err, "check storage.azure.accountName and storage.azure.serviceURL and the credentials in storage.azure.credentialsSecret")
		require.NotContains(t, err.Error(), wrong)
		require.NotContains(t, err.Error(), az.Key)
	})

	t.Run("an account key that is not base64 should fail naming the Secret", func(t *testing.T) {
		t.Parallel()
		_, err := storecheck.NewAzure(storecheck.Azure{AccountName: "a", AccountKey: "not base64!", Container: "c"})
		require.EqualError(t, err, "the account key in storage.azure.credentialsSecret is not base64, as the Azure portal's access keys are")
	})

	t.Run("a blob service that does not answer should fail naming the values to check", func(t *testing.T) {
		t.Parallel()
		s, err := storecheck.NewAzure(storecheck.Azure{AccountName: az.Account, AccountKey: az.Key, Container: "c1", ServiceURL: "http://" + closedAddr(t) + "/" + az.Account})
		require.NoError(t, err)
		_, err = storecheck.Check(t.Context(), s, storecheck.Options{Create: true})
		require.ErrorContains(t, err, "cannot reach Azure Blob container")
		require.ErrorContains(t, err, "connection refused")
		require.NotContains(t, err.Error(), az.Key)
	})
}

func TestS3(t *testing.T) {
	t.Parallel()
	bin := testenv.MinIOBin(chartrender.RepoRoot())
	if _, err := os.Stat(bin); err != nil {
		// MinIO takes about 17 minutes to build: `make e2e-s3` builds it and runs this test (S3_REQUIRED=1).
		if os.Getenv("S3_REQUIRED") != "" {
			t.Fatalf("%s is missing: run bash ci/s3-store.sh", bin)
		}
		t.Skipf("%s is missing: run bash ci/s3-store.sh (make e2e-s3 does)", bin)
	}
	access, secret := "check-"+testenv.RandomKey(4), testenv.RandomKey(16)
	m, err := testenv.StartMinIO(t.Context(), bin, "127.0.0.1", t.TempDir(), access, secret, nil)
	require.NoError(t, err)
	t.Cleanup(m.Stop)
	store := func(t *testing.T, bucket, secretKey string) *storecheck.S3 {
		s, err := storecheck.NewS3(storecheck.S3{Bucket: bucket, Region: "us-east-1", Endpoint: m.Endpoint, AccessKey: access, SecretKey: secretKey, ForcePathStyle: true})
		require.NoError(t, err)
		return s
	}

	t.Run("a missing bucket that the check may not create should fail with the command that creates it", func(t *testing.T) {
		_, err := storecheck.Check(t.Context(), store(t, "missing-one", secret), storecheck.Options{})
		require.ErrorIs(t, err, storecheck.ErrMissing)
		require.ErrorContains(t, err, "aws s3api create-bucket --bucket missing-one --region us-east-1 --endpoint-url "+m.Endpoint)
	})

	t.Run("a missing bucket should be created, then written, read back and deleted; a second check finds it", func(t *testing.T) {
		s := store(t, "created-by-check", secret)
		res, err := storecheck.Check(t.Context(), s, storecheck.Options{Create: true, RootDirectory: "/registry"})
		require.NoError(t, err)
		require.True(t, res.Created)
		res, err = storecheck.Check(t.Context(), s, storecheck.Options{})
		require.NoError(t, err)
		require.False(t, res.Created)
	})

	t.Run("a wrong secret key should fail naming the Secret's value, without the key", func(t *testing.T) {
		_, err := storecheck.Check(t.Context(), store(t, "wrong-key", "wrong-"+secret), storecheck.Options{Create: true})
		require.ErrorContains(t, err, "the store answered 403 SignatureDoesNotMatch")
		require.ErrorContains(t, err, "storage.s3.credentialsSecret")
		require.NotContains(t, err.Error(), secret)
	})
}
