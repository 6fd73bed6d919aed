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
