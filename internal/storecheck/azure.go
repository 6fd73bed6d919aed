package storecheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Azure is a Blob container, as Distribution's azure driver reaches it with credentials.type shared_key.
type Azure struct {
	AccountName, AccountKey, Container string
	// ServiceURL is the blob service; empty is https://<AccountName>.blob.<Realm>.
	ServiceURL, Realm string

	client *container.Client
}

// NewAzure checks the settings and builds the client. The account key is base64, as the portal shows it.
func NewAzure(a Azure) (*Azure, error) {
	if a.Realm == "" {
		a.Realm = "core.windows.net"
	}
	if a.ServiceURL == "" {
		a.ServiceURL = fmt.Sprintf("https://%s.blob.%s", a.AccountName, a.Realm)
	}
	u, err := url.Parse(a.ServiceURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("storage.azure.serviceURL %q is not an http(s):// URL", a.ServiceURL)
	}
	cred, err := azblob.NewSharedKeyCredential(a.AccountName, a.AccountKey)
	if err != nil {
		// The SDK's message does not hold the key, but say it plainly.
		return nil, errors.New("the account key in storage.azure.credentialsSecret is not base64, as the Azure portal's access keys are")
	}
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry:     policy.RetryOptions{MaxRetries: 1},
		Telemetry: policy.TelemetryOptions{Disabled: true},
	}}
	c, err := container.NewClientWithSharedKeyCredential(strings.TrimSuffix(a.ServiceURL, "/")+"/"+a.Container, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("storage.azure.serviceURL %q: %w", a.ServiceURL, err)
	}
	a.client = c
	return &a, nil
}

// Describe implements Store.
func (a *Azure) Describe() string {
	return fmt.Sprintf("Azure Blob container %q of account %q at %s", a.Container, a.AccountName, a.ServiceURL)
}

// Values implements Store.
func (a *Azure) Values() Values {
	return Values{Container: "storage.azure.container", Credentials: "storage.azure.credentialsSecret", Endpoint: "storage.azure.accountName and storage.azure.serviceURL"}
}

// HowToCreate implements Store.
func (a *Azure) HowToCreate() string {
	return fmt.Sprintf("az storage container create --name %s --account-name %s --auth-mode key", a.Container, a.AccountName)
}

// Exists implements Store.
func (a *Azure) Exists(ctx context.Context) (bool, error) {
	_, err := a.client.GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return false, nil
	}
	if err != nil {
		return false, azureErr(err)
	}
	return true, nil
}

// Create implements Store.
func (a *Azure) Create(ctx context.Context) error {
	_, err := a.client.Create(ctx, nil)
	if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil
	}
	return azureErr(err)
}

// Put implements Store.
func (a *Azure) Put(ctx context.Context, key string, data []byte) error {
	_, err := a.client.NewBlockBlobClient(key).UploadBuffer(ctx, data, nil)
	return azureErr(err)
}

// Get implements Store.
func (a *Azure) Get(ctx context.Context, key string) ([]byte, error) {
	resp, err := a.client.NewBlobClient(key).DownloadStream(ctx, nil)
	if err != nil {
		return nil, azureErr(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = io.Copy(&b, io.LimitReader(resp.Body, 1<<20))
	return b.Bytes(), err
}

// Delete implements Store.
func (a *Azure) Delete(ctx context.Context, key string) error {
	_, err := a.client.NewBlobClient(key).Delete(ctx, nil)
	return azureErr(err)
}

// azureErr shortens the SDK's error to the service's answer: its multi-line message repeats the request.
func azureErr(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("the blob service answered %d %s", re.StatusCode, re.ErrorCode)
	}
	return err
}
