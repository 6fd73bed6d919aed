package preflight

import "github.com/connected-registry/connected-registry/internal/cli"

// AddFlags registers the flags that fill c, with their environment twins: the chart's preflight Job passes the
// release's values to the hook as these args, and `kubectl connected-registry check --pre` reads the same args from
// the chart it renders, so both run the checks on one Config.
func AddFlags(fs *cli.FlagSet, c *Config) {
	const p = "CONNECTED_REGISTRY_PREFLIGHT_"
	fs.BoolVar(&c.Upgrade, "upgrade", p+"UPGRADE", false,
		"the release is being upgraded: its own Service and claim exist and do not count against it")
	fs.StringVar(&c.Service, "service", p+"SERVICE", "", "name of the release's registry Service (required)")
	fs.StringVar(&c.PVC, "pvc", p+"PVC", "", "name of the release's cache PersistentVolumeClaim")
	fs.StringVar(&c.InputSecret, "input-secret", p+"INPUT_SECRET", "",
		"hook Secret holding connectionString, tls.crt, tls.key and tls.cacrt as the values give them; empty when none is given")
	fs.StringVar(&c.ClusterIP, "cluster-ip", p+"CLUSTER_IP", "", "service.clusterIP (required)")
	fs.ListVar(&c.DNSNames, "dns", p+"DNS", nil, "the Service's DNS names, comma-separated, which the certificate should hold")
	fs.StringVar(&c.TLSSource, "tls-source", p+"TLS_SOURCE", SourceCertManager,
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
	fs.StringVar(&st.Type, "storage-type", p+"STORAGE_TYPE", StoragePVC, "storage.type: pvc, azure or s3")
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
		"trustDistribution.useNodeSelector: trust goes only to nodes labelled "+TrustNodeLabel)
	fs.ListVar(&c.RegistryNodeSelector, "registry-node-selector", p+"REGISTRY_NODE_SELECTOR", nil,
		"registry.nodeSelector as key=value items, comma-separated")
	fs.StringVar(&c.ClientTokensSecret, "client-tokens-secret", p+"CLIENT_TOKENS_SECRET", "",
		"clientTokens.secret when client tokens are on: the Secret of the client tokens; empty: client tokens are off")
	fs.StringVar(&c.PullSecretCredentials, "pull-secret-credentials", p+"PULL_SECRET_CREDENTIALS", "",
		"clientTokens.pullSecret.credentialsSecret: username and password of the client token the pull Secrets hold")
	fs.ListVar(&c.PullSecretNamespaces, "pull-secret-namespaces", p+"PULL_SECRET_NAMESPACES", nil,
		"clientTokens.pullSecret.namespaces, comma-separated")
}
