package preflight

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/storecheck"
)

// Storage types, as the chart's storage.type names them.
const (
	StoragePVC   = "pvc"
	StorageAzure = "azure"
	StorageS3    = "s3"
)

// objectStoreTimeout bounds the object store check: reaching the store, creating the container, the probe.
const objectStoreTimeout = 30 * time.Second

// ObjectStore is storage.* of the values: where the registry keeps its cache when it is not a volume.
type ObjectStore struct {
	// Type is storage.type: pvc, azure or s3.
	Type string
	// CreateIfMissing lets the check create the container or bucket.
	CreateIfMissing bool
	// CredentialsSecret is storage.azure.credentialsSecret or storage.s3.credentialsSecret; the keys below name
	// its keys.
	CredentialsSecret string
	// RootDirectory is the cache's folder in the container or bucket.
	RootDirectory string

	AzureAccountName, AzureContainer, AzureServiceURL, AzureRealm, AzureAccountKeyKey string

	S3Bucket, S3Region, S3RegionEndpoint, S3AccessKeyKey, S3SecretKeyKey string
	S3ForcePathStyle, S3SkipVerify                                       bool
}

// checkObjectStore: with storage.type azure or s3, the container or bucket is reachable with the credentials of
// the Secret, exists (or is created), and takes a probe object written, read back and deleted.
func checkObjectStore(ctx context.Context, c *Checker) (Status, string) {
	o := c.Config.Storage
	switch o.Type {
	case "", StoragePVC:
		return ok("storage.type=pvc: the cache is on the release's volume")
	case StorageAzure, StorageS3:
	default:
		return fail("storage.type %q is not pvc, azure or s3", o.Type)
	}
	key := fmt.Sprintf("storage.%s.credentialsSecret", o.Type)
	secret, err := c.Client.CoreV1().Secrets(c.Config.Namespace).Get(ctx, o.CredentialsSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail("%s %s/%s does not exist: create it with the store's credentials before installing", key, c.Config.Namespace, o.CredentialsSecret)
	}
	if err != nil {
		return fail("cannot read %s %s/%s: %v", key, c.Config.Namespace, o.CredentialsSecret, err)
	}
	value := func(k string) (string, error) {
		v, found := secret.Data[k]
		if !found || len(v) == 0 {
			return "", fmt.Errorf("%s %s/%s has no key %q (or it is empty): add it, or name the key that holds it in storage.%s.%s", key, c.Config.Namespace, o.CredentialsSecret, k, o.Type, keyValue(o, k))
		}
		return string(v), nil
	}
	var store storecheck.Store
	switch o.Type {
	case StorageAzure:
		accountKey, err := value(o.AzureAccountKeyKey)
		if err != nil {
			return fail("%v", err)
		}
		store, err = storecheck.NewAzure(storecheck.Azure{AccountName: o.AzureAccountName, AccountKey: accountKey,
			Container: o.AzureContainer, ServiceURL: o.AzureServiceURL, Realm: o.AzureRealm})
		if err != nil {
			return fail("%v", err)
		}
	case StorageS3:
		access, err := value(o.S3AccessKeyKey)
		if err != nil {
			return fail("%v", err)
		}
		secretKey, err := value(o.S3SecretKeyKey)
		if err != nil {
			return fail("%v", err)
		}
		store, err = storecheck.NewS3(storecheck.S3{Bucket: o.S3Bucket, Region: o.S3Region, Endpoint: o.S3RegionEndpoint,
			AccessKey: access, SecretKey: secretKey, ForcePathStyle: o.S3ForcePathStyle, SkipVerify: o.S3SkipVerify})
		if err != nil {
			return fail("%v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, objectStoreTimeout)
	defer cancel()
	res, err := storecheck.Check(ctx, store, storecheck.Options{Create: o.CreateIfMissing, RootDirectory: o.RootDirectory})
	if err != nil {
		return fail("%v", err)
	}
	msg := fmt.Sprintf("%s: ", store.Describe())
	if res.Created {
		msg += "created it; "
	}
	return ok("%swrote, read back and deleted a probe object", msg)
}

// keyValue names the value that names Secret key k.
func keyValue(o ObjectStore, k string) string {
	switch k {
	case o.AzureAccountKeyKey:
		return "accountKeyKey"
	case o.S3AccessKeyKey:
		return "accessKeyKey"
	}
	return "secretKeyKey"
}
