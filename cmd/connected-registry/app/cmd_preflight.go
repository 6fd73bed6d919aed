package app

import (
	"context"
	"io"
	"os"

	"github.com/connected-registry/connected-registry/internal/preflight"
)

// DefaultTerminationLog is where Kubernetes reads a container's termination message.
const DefaultTerminationLog = "/dev/termination-log"

// PreflightOptions checks the release's values against the cluster before install or upgrade (package
// preflight). It prints one line per check, writes the failures and warnings to the termination log, and fails
// when a check fails.
type PreflightOptions struct {
	KubeOptions
	// Config is filled by the flags; Namespace comes from KubeOptions.
	Config preflight.Config
	// TerminationLog receives the summary; empty skips it.
	TerminationLog string
}

// AddFlags registers the flags; the chart's preflight Job passes them as args.
func (o *PreflightOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "PREFLIGHT", jobTimeoutHelp)
	const p = "CONNECTED_REGISTRY_PREFLIGHT_"
	c := &o.Config
	fs.BoolVar(&c.Upgrade, "upgrade", p+"UPGRADE", false,
		"the release is being upgraded: its own Service and claim exist and do not count against it")
	fs.StringVar(&c.Service, "service", p+"SERVICE", "", "name of the release's registry Service (required)")
	fs.StringVar(&c.PVC, "pvc", p+"PVC", "", "name of the release's cache PersistentVolumeClaim")
	fs.StringVar(&c.InputSecret, "input-secret", p+"INPUT_SECRET", "",
		"hook Secret holding connectionString, tls.crt, tls.key and tls.cacrt as the values give them; empty when none is given")
	fs.StringVar(&c.ClusterIP, "cluster-ip", p+"CLUSTER_IP", "", "service.clusterIP (required)")
	fs.ListVar(&c.DNSNames, "dns", p+"DNS", nil, "the Service's DNS names, comma-separated, which the certificate should hold")
	fs.StringVar(&c.TLSSource, "tls-source", p+"TLS_SOURCE", preflight.SourceCertManager,
		"where the certificate comes from: secret (tls.secret), byoc (tls.crt), cert-manager or generated")
	fs.StringVar(&c.TLSSecret, "tls-secret", p+"TLS_SECRET", "", "tls.secret: the existing kubernetes.io/tls Secret, for --tls-source=secret")
	fs.StringVar(&c.KeyAlgorithm, "key-algorithm", p+"KEY_ALGORITHM", "ECDSA", "tls.keyAlgorithm, for --tls-source=generated")
	fs.IntVar(&c.KeySize, "key-size", p+"KEY_SIZE", 256, "tls.keySize in bits, for --tls-source=generated")
	fs.BoolVar(&c.CertManagerEnabled, "cert-manager-enabled", p+"CERT_MANAGER_ENABLED", false, "cert-manager.enabled")
	fs.BoolVar(&c.CertManagerInstall, "cert-manager-install", p+"CERT_MANAGER_INSTALL", false, "cert-manager.install")
	fs.StringVar(&c.ParentURL, "parent-url", p+"PARENT_URL", "",
		"the parent registry's URL: the check authenticates to it as the registry will; empty skips the check")
	fs.StringVar(&c.ParentCredentialsSecret, "parent-credentials-secret", p+"PARENT_CREDENTIALS_SECRET", "",
		"registry.parent.credentialsSecret, whose username and password the registry uses instead of the connection string's sync token")
	fs.StringVar(&c.StorageClass, "storage-class", p+"STORAGE_CLASS", "", "pvc.storageClassName; empty means the cluster's default class")
	fs.StringVar(&c.StorageRequest, "storage-request", p+"STORAGE_REQUEST", "", "pvc.storageRequest, like 500Gi")
	st := &c.Storage
	fs.StringVar(&st.Type, "storage-type", p+"STORAGE_TYPE", preflight.StoragePVC, "storage.type: pvc, azure or s3")
	fs.BoolVar(&st.CreateIfMissing, "storage-create", p+"STORAGE_CREATE", true, "storage.createIfMissing: create a missing container or bucket")
	fs.StringVar(&st.CredentialsSecret, "storage-credentials-secret", p+"STORAGE_CREDENTIALS_SECRET", "", "storage.azure.credentialsSecret or storage.s3.credentialsSecret")
	fs.StringVar(&st.RootDirectory, "storage-root-directory", p+"STORAGE_ROOT_DIRECTORY", "", "storage.azure.rootDirectory or storage.s3.rootDirectory")
	fs.StringVar(&st.AzureAccountName, "storage-azure-account", p+"STORAGE_AZURE_ACCOUNT", "", "storage.azure.accountName")
	fs.StringVar(&st.AzureContainer, "storage-azure-container", p+"STORAGE_AZURE_CONTAINER", "", "storage.azure.container")
	fs.StringVar(&st.AzureServiceURL, "storage-azure-service-url", p+"STORAGE_AZURE_SERVICE_URL", "", "storage.azure.serviceURL")
	fs.StringVar(&st.AzureRealm, "storage-azure-realm", p+"STORAGE_AZURE_REALM", "core.windows.net", "storage.azure.realm")
	fs.StringVar(&st.AzureAccountKeyKey, "storage-azure-account-key-key", p+"STORAGE_AZURE_ACCOUNT_KEY_KEY", "accountkey", "storage.azure.accountKeyKey")
	fs.StringVar(&st.S3Bucket, "storage-s3-bucket", p+"STORAGE_S3_BUCKET", "", "storage.s3.bucket")
	fs.StringVar(&st.S3Region, "storage-s3-region", p+"STORAGE_S3_REGION", "us-east-1", "storage.s3.region")
	fs.StringVar(&st.S3RegionEndpoint, "storage-s3-region-endpoint", p+"STORAGE_S3_REGION_ENDPOINT", "", "storage.s3.regionEndpoint")
	fs.BoolVar(&st.S3ForcePathStyle, "storage-s3-force-path-style", p+"STORAGE_S3_FORCE_PATH_STYLE", false, "storage.s3.forcePathStyle")
	fs.BoolVar(&st.S3SkipVerify, "storage-s3-skip-verify", p+"STORAGE_S3_SKIP_VERIFY", false, "storage.s3.skipVerify")
	fs.StringVar(&st.S3AccessKeyKey, "storage-s3-access-key-key", p+"STORAGE_S3_ACCESS_KEY_KEY", "accesskey", "storage.s3.accessKeyKey")
	fs.StringVar(&st.S3SecretKeyKey, "storage-s3-secret-key-key", p+"STORAGE_S3_SECRET_KEY_KEY", "secretkey", "storage.s3.secretKeyKey")
	fs.BoolVar(&c.TrustDistribution, "trust-distribution", p+"TRUST_DISTRIBUTION", true, "trustDistribution.enabled")
	fs.BoolVar(&c.UseNodeSelector, "use-node-selector", p+"USE_NODE_SELECTOR", false,
		"trustDistribution.useNodeSelector: trust goes only to nodes labelled "+preflight.TrustNodeLabel)
	fs.ListVar(&c.RegistryNodeSelector, "registry-node-selector", p+"REGISTRY_NODE_SELECTOR", nil,
		"registry.nodeSelector as key=value items, comma-separated")
	fs.StringVar(&o.TerminationLog, "termination-log", p+"TERMINATION_LOG", DefaultTerminationLog,
		"file for the summary Kubernetes shows as the container's termination message; empty writes none")
}

// Complete validates the options and builds the API client.
func (o *PreflightOptions) Complete() error {
	c := &o.Config
	if c.Service == "" {
		return usageErrorf("--service is required: the release's registry Service, like cr-connected-registry")
	}
	if c.ClusterIP == "" {
		return usageErrorf("--cluster-ip is required: service.clusterIP")
	}
	switch c.TLSSource {
	case preflight.SourceSecret:
		if c.TLSSecret == "" {
			return usageErrorf("--tls-source=secret needs --tls-secret: tls.secret")
		}
	case preflight.SourceBYOC:
		if c.InputSecret == "" {
			return usageErrorf("--tls-source=byoc needs --input-secret: the hook Secret with tls.crt and tls.key")
		}
	case preflight.SourceCertManager, preflight.SourceGenerated:
	default:
		return usageErrorf("--tls-source %q is not secret, byoc, cert-manager or generated", c.TLSSource)
	}
	return o.complete()
}

// Run runs every check, prints one line each, writes the termination log, and returns preflight.ErrChecksFailed
// when one fails.
func (o *PreflightOptions) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	cfg := o.Config
	cfg.Namespace = o.Namespace
	checker := &preflight.Checker{Client: o.Client, Config: cfg, Log: o.Log}
	msg, err := checker.Report(ctx, out)
	if o.TerminationLog != "" {
		if werr := os.WriteFile(o.TerminationLog, []byte(msg), 0o644); werr != nil {
			o.Log.Debug("cannot write the termination log", "path", o.TerminationLog, errKey, werr)
		}
	}
	return err
}
