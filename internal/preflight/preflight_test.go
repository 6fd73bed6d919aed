package preflight_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/preflight"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type fakeClock struct{ t time.Time }

func (c fakeClock) Now() time.Time { return c.t }

const (
	ns        = "connected-registry"
	svcName   = "cr-connected-registry"
	input     = "cr-connected-registry-preflight"
	clusterIP = "10.96.0.50"
	goodCS    = "ConnectedRegistryName=edge1;SyncTokenName=edge1-sync-token;SyncTokenPassword=s3cret-password;ParentGatewayEndpoint=contoso.westus2.data.azurecr.io;ParentEndpointProtocol=https"
)

var dnsNames = []string{svcName, svcName + "." + ns, svcName + "." + ns + ".svc", svcName + "." + ns + ".svc.cluster.local"}

// baseConfig is a fresh install with cert-manager installed by the chart and everything else default.
func baseConfig() preflight.Config {
	return preflight.Config{
		Namespace: ns, Service: svcName, PVC: svcName + "-data", InputSecret: input,
		ClusterIP: clusterIP, DNSNames: dnsNames,
		TLSSource: preflight.SourceCertManager, KeyAlgorithm: "ECDSA", KeySize: 256,
		CertManagerEnabled: true, CertManagerInstall: true,
		StorageRequest: "500Gi", TrustDistribution: true,
	}
}

func inputSecret(data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: input, Namespace: ns}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func storageClass(name string, isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "rancher.io/local-path"}
	if isDefault {
		sc.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
	}
	return sc
}

func serviceCIDR(cidrs ...string) *networkingv1.ServiceCIDR {
	return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

func ipAddress(ip, namespace, service string) *networkingv1.IPAddress {
	return &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: ip}, Spec: networkingv1.IPAddressSpec{
		ParentRef: &networkingv1.ParentReference{Group: "", Resource: "services", Namespace: namespace, Name: service},
	}}
}

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// cluster is a fake API server: a kind-like cluster with the ServiceCIDR 10.96.0.0/16, the kubernetes and
// kube-dns Services, one default StorageClass, one node, and a dry-run allocator that knows the taken addresses.
type cluster struct {
	objects []runtime.Object
	// noNetworkingAPI drops ServiceCIDRs and IPAddresses, as on clusters before Kubernetes 1.33.
	noNetworkingAPI bool
	// certManager serves cert-manager.io/v1.
	certManager bool
	// dryRun answers the dry-run create of a Service: nil to allocate from 10.96.0.0/16.
	dryRun func(ip string) error
}

func defaultObjects() []runtime.Object {
	return []runtime.Object{
		serviceCIDR("10.96.0.0/16"),
		ipAddress("10.96.0.1", "default", "kubernetes"),
		ipAddress("10.96.0.10", "kube-system", "kube-dns"),
		storageClass("standard", true),
		node("node-1", map[string]string{"kubernetes.io/os": "linux"}),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
	}
}

func (c cluster) client(t *testing.T) *fake.Clientset {
	t.Helper()
	client := fake.NewClientset(c.objects...)
	if c.noNetworkingAPI {
		for _, res := range []string{"servicecidrs", "ipaddresses"} {
			client.PrependReactor("*", res, func(a k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "networking.k8s.io", Resource: a.GetResource().Resource}, "")
			})
		}
	}
	client.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		create := a.(k8stesting.CreateActionImpl)
		require.Equal(t, []string{metav1.DryRunAll}, create.GetCreateOptions().DryRun, "preflight only ever creates in dry run")
		svc := create.GetObject().(*corev1.Service)
		if c.dryRun != nil {
			return true, svc, c.dryRun(svc.Spec.ClusterIP)
		}
		return true, svc, allocate(c.objects, svc.Spec.ClusterIP)
	})
	disc := client.Discovery().(*fakediscovery.FakeDiscovery)
	if c.certManager {
		disc.Resources = append(disc.Resources, &metav1.APIResourceList{GroupVersion: "cert-manager.io/v1", APIResources: []metav1.APIResource{
			{Name: "certificates", Kind: "Certificate"}, {Name: "issuers", Kind: "Issuer"}, {Name: "clusterissuers", Kind: "ClusterIssuer"},
		}})
	}
	return client
}

// allocate answers like the API server's allocator for 10.96.0.0/16.
func allocate(objects []runtime.Object, ip string) error {
	a := netip.MustParseAddr(ip)
	if !netip.MustParsePrefix("10.96.0.0/16").Contains(a) {
		return invalidClusterIP(ip, "failed to allocate IP "+ip+": the provided IP ("+ip+") is not in the valid range. The range of valid IPs is 10.96.0.0/16")
	}
	for _, o := range objects {
		if addr, isAddr := o.(*networkingv1.IPAddress); isAddr && addr.Name == ip {
			return invalidClusterIP(ip, "failed to allocate IP "+ip+": provided IP is already allocated")
		}
	}
	return nil
}

func invalidClusterIP(ip, detail string) error {
	return apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svcName, field.ErrorList{
		field.Invalid(field.NewPath("spec", "clusterIPs"), []string{ip}, detail),
	})
}

func run(t *testing.T, c cluster, cfg preflight.Config, name string) preflight.Result {
	t.Helper()
	checker := &preflight.Checker{Client: c.client(t), Config: cfg, Clock: fakeClock{now}}
	results := checker.Run(context.Background())
	require.Len(t, results, len(preflight.Names()))
	for _, r := range results {
		require.NotContains(t, r.Message, "s3cret-password", "no verdict may hold the sync token password")
		require.NotContains(t, r.Message, "\n")
		if r.Check == name {
			return r
		}
	}
	t.Fatalf("no check %s", name)
	return preflight.Result{}
}

type testCase struct {
	name    string
	cluster cluster
	cfg     func(*preflight.Config)
	status  preflight.Status
	want    string
}

func runTable(t *testing.T, check string, tests []testCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			if tc.cluster.objects == nil {
				tc.cluster.objects = append(defaultObjects(), inputSecret(map[string]string{"connectionString": goodCS}))
			}
			r := run(t, tc.cluster, cfg, check)
			require.Equal(t, tc.want, r.Message)
			require.Equal(t, tc.status, r.Status, r.Message)
			require.Equal(t, check+": "+tc.status.String()+": "+tc.want, r.String())
		})
	}
}

func with(objects ...runtime.Object) []runtime.Object { return append(defaultObjects(), objects...) }

func TestConnectionString(t *testing.T) {
	t.Parallel()
	runTable(t, "connection-string", []testCase{
		{
			name: "a valid connection string should pass, naming the parent without the password",
			want: "connected registry edge1 syncs from https://contoso.azurecr.io with token edge1-sync-token",
		},
		{
			name:    "typographic quotes copied from a document should fail",
			cluster: cluster{objects: with(inputSecret(map[string]string{"connectionString": "“" + goodCS + "”"}))},
			status:  preflight.Fail,
			want:    "connectionString: connection string contains typographic quotes copied from a document; use plain ASCII quotes or none",
		},
		{
			name:    "an empty password should fail naming the field",
			cluster: cluster{objects: with(inputSecret(map[string]string{"connectionString": strings.Replace(goodCS, "s3cret-password", "", 1)}))},
			status:  preflight.Fail,
			want:    "connectionString: connection string field SyncTokenPassword is empty; give it a value or copy the whole output of az acr connected-registry get-settings again",
		},
		{
			name:    "whitespace inside should fail",
			cluster: cluster{objects: with(inputSecret(map[string]string{"connectionString": strings.Replace(goodCS, ";SyncTokenPassword", "; SyncTokenPassword", 1)}))},
			status:  preflight.Fail,
			want:    "connectionString: connection string contains whitespace (a space) in field 3; remove it",
		},
		{
			name:    "no connection string, with a parent URL instead, should pass",
			cluster: cluster{objects: with(inputSecret(nil))},
			want:    "connectionString is not given: registry.parent.url names the parent",
		},
		{
			name:    "a missing hook Secret should fail",
			cluster: cluster{objects: defaultObjects()},
			status:  preflight.Fail,
			want:    "the hook Secret connected-registry/cr-connected-registry-preflight that hands the values over is missing (Helm creates it just before this Job): run the install again",
		},
	})
}

func TestClusterIP(t *testing.T) {
	t.Parallel()
	ownService := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svcName, Namespace: ns}, Spec: corev1.ServiceSpec{ClusterIP: clusterIP}}
	dryRunOnly := func(ip string) error { return allocate(defaultObjects(), ip) }
	noAPI := []runtime.Object{storageClass("standard", true), inputSecret(map[string]string{"connectionString": goodCS})}
	runTable(t, "cluster-ip", []testCase{
		{
			name: "a free address inside the ServiceCIDR should pass",
			want: "service.clusterIP 10.96.0.50 is inside the service CIDR 10.96.0.0/16 and free",
		},
		{
			name:   "an address outside the ServiceCIDR should fail and suggest a free one from the static band",
			cfg:    func(c *preflight.Config) { c.ClusterIP = "10.97.0.50" },
			status: preflight.Fail,
			want:   "service.clusterIP 10.97.0.50 is outside the cluster's service CIDR 10.96.0.0/16: choose a free address in 10.96.0.0/16; the lower end of the range is kept for fixed ClusterIPs, and 10.96.0.2 is free (--set service.clusterIP=10.96.0.2)",
		},
		{
			name:   "an address another Service holds should fail naming it",
			cfg:    func(c *preflight.Config) { c.ClusterIP = "10.96.0.10" },
			status: preflight.Fail,
			want:   "service.clusterIP 10.96.0.10 is taken by Service kube-system/kube-dns: choose a free address in 10.96.0.0/16; the lower end of the range is kept for fixed ClusterIPs, and 10.96.0.2 is free (--set service.clusterIP=10.96.0.2)",
		},
		{
			name:    "on upgrade the release's own Service should not count",
			cluster: cluster{objects: with(ipAddress(clusterIP, ns, svcName), ownService, inputSecret(map[string]string{"connectionString": goodCS}))},
			cfg:     func(c *preflight.Config) { c.Upgrade = true },
			want:    "service.clusterIP 10.96.0.50 belongs to this release's Service connected-registry/cr-connected-registry",
		},
		{
			name:    "changing the address of the release's Service should fail, since it cannot change",
			cluster: cluster{objects: with(ipAddress(clusterIP, ns, svcName), ownService, inputSecret(map[string]string{"connectionString": goodCS}))},
			cfg:     func(c *preflight.Config) { c.Upgrade, c.ClusterIP = true, "10.96.0.60" },
			status:  preflight.Fail,
			want:    "service.clusterIP is 10.96.0.60, but this release's Service connected-registry/cr-connected-registry has 10.96.0.50 and a Service's ClusterIP cannot change: keep service.clusterIP=10.96.0.50 (the nodes trust that address), or uninstall the release and install it again with the new address",
		},
		{
			name:    "changing the address of the release's Service to one another Service holds should say it is taken",
			cluster: cluster{objects: with(ipAddress(clusterIP, ns, svcName), ipAddress("10.96.0.61", "other", "holder"), ownService, inputSecret(map[string]string{"connectionString": goodCS}))},
			cfg:     func(c *preflight.Config) { c.Upgrade, c.ClusterIP = true, "10.96.0.61" },
			status:  preflight.Fail,
			want:    "service.clusterIP 10.96.0.61 is taken by Service other/holder; besides, this release's Service connected-registry/cr-connected-registry has 10.96.0.50, and a Service's ClusterIP cannot change: keep service.clusterIP=10.96.0.50 (the nodes trust that address)",
		},
		{
			name:    "without the ServiceCIDR API a free address should pass the dry-run create",
			cluster: cluster{objects: noAPI, noNetworkingAPI: true, dryRun: dryRunOnly},
			want:    "service.clusterIP 10.96.0.50 is inside the service range and free (a dry-run create of Service connected-registry/cr-connected-registry succeeded)",
		},
		{
			name:    "without the ServiceCIDR API an address out of range should fail with the range the API server names",
			cluster: cluster{objects: noAPI, noNetworkingAPI: true, dryRun: dryRunOnly},
			cfg:     func(c *preflight.Config) { c.ClusterIP = "192.168.0.50" },
			status:  preflight.Fail,
			want:    "service.clusterIP 192.168.0.50 is outside the cluster's service CIDR 10.96.0.0/16: choose a free address in 10.96.0.0/16; the lower end of the range is kept for fixed ClusterIPs, and 10.96.0.2 is free (--set service.clusterIP=10.96.0.2)",
		},
		{
			name:    "without the ServiceCIDR API a taken address should fail",
			cluster: cluster{objects: noAPI, noNetworkingAPI: true, dryRun: dryRunOnly},
			cfg:     func(c *preflight.Config) { c.ClusterIP = "10.96.0.10" },
			status:  preflight.Fail,
			want:    "service.clusterIP 10.96.0.10 is already taken by another Service: choose a free address inside the cluster's service CIDR (kubectl get servicecidr)",
		},
		{
			name: "when neither the API nor the dry run can tell, it should warn",
			cluster: cluster{objects: noAPI, noNetworkingAPI: true, dryRun: func(string) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, svcName, nil)
			}},
			status: preflight.Warn,
			want:   `cannot tell whether service.clusterIP 10.96.0.50 is free: the dry-run create of Service connected-registry/cr-connected-registry failed (services "cr-connected-registry" is forbidden: <nil>), and the cluster does not serve the ServiceCIDR API`,
		},
		{
			name:   "something that is not an address should fail",
			cfg:    func(c *preflight.Config) { c.ClusterIP = "10.96.0.500" },
			status: preflight.Fail,
			want:   `service.clusterIP "10.96.0.500" is not an IP address: set it to a free address inside the cluster's service CIDR, like 10.96.0.50`,
		},
	})
}

func TestCertManager(t *testing.T) {
	t.Parallel()
	objs := func() []runtime.Object { return with(inputSecret(map[string]string{"connectionString": goodCS})) }
	runTable(t, "cert-manager", []testCase{
		{
			name: "installing cert-manager where none is should pass",
			want: "cert-manager is not installed yet: this release installs it",
		},
		{
			name:    "installing cert-manager where one already is should fail",
			cluster: cluster{objects: objs(), certManager: true},
			status:  preflight.Fail,
			want:    "cert-manager is already installed (the API cert-manager.io/v1 is served), and cert-manager.install=true would install it a second time: set cert-manager.install=false to use the one in the cluster",
		},
		{
			name:    "on upgrade the release's own cert-manager should pass",
			cluster: cluster{objects: objs(), certManager: true},
			cfg:     func(c *preflight.Config) { c.Upgrade = true },
			want:    "cert-manager, installed by this release, serves cert-manager.io/v1",
		},
		{
			name:    "using the cluster's cert-manager should pass when it is there",
			cluster: cluster{objects: objs(), certManager: true},
			cfg:     func(c *preflight.Config) { c.CertManagerInstall = false },
			want:    "cert-manager serves cert-manager.io/v1 with certificates and issuers",
		},
		{
			name:   "using the cluster's cert-manager should fail when it is not there",
			cfg:    func(c *preflight.Config) { c.CertManagerInstall = false },
			status: preflight.Fail,
			want:   "cert-manager.enabled=true with cert-manager.install=false needs cert-manager in the cluster, but the API cert-manager.io/v1 is not served: install cert-manager first, or set cert-manager.install=true, or choose another TLS source (tls.secret, tls.crt, or cert-manager.enabled=false for generated certificates)",
		},
		{
			name: "no cert-manager for another TLS source should pass",
			cfg: func(c *preflight.Config) {
				c.CertManagerEnabled, c.CertManagerInstall, c.TLSSource = false, false, preflight.SourceGenerated
			},
			want: "not used: the TLS source is generated",
		},
		{
			name:   "installing cert-manager that nothing uses should warn",
			cfg:    func(c *preflight.Config) { c.CertManagerEnabled, c.TLSSource = false, preflight.SourceGenerated },
			status: preflight.Warn,
			want:   "cert-manager.install=true installs cert-manager, but cert-manager.enabled=false does not use it (TLS source generated): set cert-manager.install=false unless something else needs it",
		},
	})
}

func TestTLS(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "site CA", Key: certs.DefaultKeySpec, Duration: certs.DefaultCADuration}, now.Add(-time.Hour))
	require.NoError(t, err)
	req := certs.Request{IPs: []netip.Addr{netip.MustParseAddr(clusterIP)}, DNSNames: dnsNames, Key: certs.DefaultKeySpec, Duration: certs.DefaultLeafDuration}
	leaf, err := certs.Issue(rand.Reader, ca, req, now.Add(-time.Hour))
	require.NoError(t, err)
	old, err := certs.Issue(rand.Reader, ca, req, now.Add(-100*24*time.Hour))
	require.NoError(t, err)
	self, err := certs.NewCA(rand.Reader, certs.Request{CommonName: clusterIP, Key: certs.DefaultKeySpec, Duration: 365 * 24 * time.Hour}, now.Add(-time.Hour))
	require.NoError(t, err)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	byoc := func(crt, key, cacrt []byte) []runtime.Object {
		return with(inputSecret(map[string]string{"connectionString": goodCS, "tls.crt": b64(crt), "tls.key": b64(key), "tls.cacrt": b64(cacrt)}))
	}
	existing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "k8secret", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.CertPEM}}
	sans := "IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local"
	byocCfg := func(c *preflight.Config) {
		c.TLSSource, c.CertManagerEnabled, c.CertManagerInstall = preflight.SourceBYOC, false, false
	}
	secretCfg := func(c *preflight.Config) {
		c.TLSSource, c.TLSSecret, c.CertManagerEnabled, c.CertManagerInstall = preflight.SourceSecret, "k8secret", false, false
	}
	runTable(t, "tls", []testCase{
		{
			name: "cert-manager as the source should pass",
			want: "cert-manager issues the serving certificate for 10.96.0.50, cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local",
		},
		{
			name:    "good BYOC values should pass",
			cluster: cluster{objects: byoc(leaf.CertPEM, leaf.KeyPEM, ca.CertPEM)},
			cfg:     byocCfg,
			want:    "tls.crt passes all 15 checks: a certificate for " + sans + ", valid until 2027-02-25T11:00:00Z",
		},
		{
			name:    "an expired BYOC certificate should fail with the validator's message",
			cluster: cluster{objects: byoc(old.CertPEM, old.KeyPEM, ca.CertPEM)},
			cfg:     byocCfg,
			status:  preflight.Fail,
			want:    "tls.crt expired on 2026-11-17T12:00:00Z (10 days ago): renew it and give the new certificate and key in tls.crt and tls.key",
		},
		{
			name:    "a BYOC key that does not match should fail",
			cluster: cluster{objects: byoc(leaf.CertPEM, old.KeyPEM, ca.CertPEM)},
			cfg:     byocCfg,
			status:  preflight.Fail,
			want:    "tls.key does not match the certificate in tls.crt (CN=cr-connected-registry): give the private key the certificate was issued for, or a certificate issued for this key",
		},
		{
			name:    "a bare CA certificate given as the serving certificate should fail for its missing names",
			cluster: cluster{objects: byoc(self.CertPEM, self.KeyPEM, self.CertPEM)},
			cfg:     byocCfg,
			status:  preflight.Fail,
			want:    `tls.crt has no subject alternative names, and clients ignore its common name "10.96.0.50": reissue it with -addext "subjectAltName = IP:10.96.0.50,DNS:cr-connected-registry,DNS:cr-connected-registry.connected-registry,DNS:cr-connected-registry.connected-registry.svc,DNS:cr-connected-registry.connected-registry.svc.cluster.local"`,
		},
		{
			name:    "an existing Secret with good material should pass",
			cluster: cluster{objects: with(existing, inputSecret(map[string]string{"connectionString": goodCS}))},
			cfg:     secretCfg,
			want:    "Secret connected-registry/k8secret passes all 16 checks: a certificate for " + sans + ", valid until 2027-02-25T11:00:00Z",
		},
		{
			name:   "a missing Secret should fail with the command that creates it",
			cfg:    secretCfg,
			status: preflight.Fail,
			want:   "Secret connected-registry/k8secret named by tls.secret does not exist: create it with kubectl -n connected-registry create secret generic k8secret --type=kubernetes.io/tls --from-file=tls.crt=<certificate chain PEM> --from-file=tls.key=<key PEM> --from-file=ca.crt=<CA PEM>, or correct tls.secret",
		},
		{
			name: "generated certificates should pass",
			cfg: func(c *preflight.Config) {
				c.TLSSource, c.CertManagerEnabled, c.CertManagerInstall = preflight.SourceGenerated, false, false
			},
			want: "certgen generates a CA and a serving certificate (ECDSA 256) for 10.96.0.50, cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local",
		},
		{
			name: "generated certificates with an ECDSA key of 2048 bits should fail before certgen runs",
			cfg: func(c *preflight.Config) {
				c.TLSSource, c.CertManagerEnabled, c.CertManagerInstall, c.KeySize = preflight.SourceGenerated, false, false, 2048
			},
			status: preflight.Fail,
			want:   "tls.keyAlgorithm=ECDSA with tls.keySize=2048: unsupported key algorithm or size: ECDSA keys are 256 (P-256) or 384 (P-384) bits, not 2048; for ECDSA set tls.keySize=256, for RSA 2048, 3072 or 4096",
		},
	})
}

func TestStorageClass(t *testing.T) {
	t.Parallel()
	expandable := true
	claim := func(class, size string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: svcName + "-data", Namespace: ns}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		}}
	}
	sec := inputSecret(map[string]string{"connectionString": goodCS})
	growable := storageClass("fast", false)
	growable.AllowVolumeExpansion = &expandable
	runTable(t, "storage-class", []testCase{
		{
			name: "the default class should pass when no class is named",
			want: "pvc.storageClassName is empty: the default StorageClass standard provisions the cache volume",
		},
		{
			name:    "a named class that exists should pass",
			cluster: cluster{objects: with(storageClass("fast", false), sec)},
			cfg:     func(c *preflight.Config) { c.StorageClass = "fast" },
			want:    "StorageClass fast exists (provisioner rancher.io/local-path)",
		},
		{
			name:    "a named class that does not exist should fail listing the classes",
			cluster: cluster{objects: with(storageClass("fast", false), sec)},
			cfg:     func(c *preflight.Config) { c.StorageClass = "premium" },
			status:  preflight.Fail,
			want:    `pvc.storageClassName "premium" does not exist, so the cache volume would stay Pending: set it to one of fast and standard (default standard), or leave it empty for the default`,
		},
		{
			name:    "no default class should fail",
			cluster: cluster{objects: []runtime.Object{storageClass("fast", false), sec}},
			status:  preflight.Fail,
			want:    "pvc.storageClassName is empty and no StorageClass is the default, so the cache volume would stay Pending: set pvc.storageClassName to one of fast",
		},
		{
			name:    "no class at all should fail",
			cluster: cluster{objects: []runtime.Object{sec}},
			status:  preflight.Fail,
			want:    "the cluster has no StorageClass, so the cache volume would stay Pending: install a provisioner (like local-path-provisioner) or create a StorageClass, and set pvc.storageClassName",
		},
		{
			name:    "two default classes should warn",
			cluster: cluster{objects: with(storageClass("fast", true), sec)},
			status:  preflight.Warn,
			want:    "pvc.storageClassName is empty and fast and standard are all marked default, so Kubernetes picks the newest: set pvc.storageClassName to the one you mean",
		},
		{
			name:    "on upgrade another class than the claim's should fail",
			cluster: cluster{objects: with(storageClass("fast", false), claim("standard", "500Gi"), sec)},
			cfg:     func(c *preflight.Config) { c.Upgrade, c.StorageClass = true, "fast" },
			status:  preflight.Fail,
			want:    `pvc.storageClassName is "fast", but the release's PersistentVolumeClaim connected-registry/cr-connected-registry-data uses "standard" and a claim's class cannot change: set pvc.storageClassName=standard to keep the cached images`,
		},
		{
			name:    "on upgrade a smaller request should fail",
			cluster: cluster{objects: with(claim("standard", "500Gi"), sec)},
			cfg:     func(c *preflight.Config) { c.Upgrade, c.StorageRequest = true, "100Gi" },
			status:  preflight.Fail,
			want:    "pvc.storageRequest is 100Gi, but the release's PersistentVolumeClaim connected-registry/cr-connected-registry-data already has 500Gi and a claim cannot shrink: set pvc.storageRequest=500Gi or more",
		},
		{
			name:    "on upgrade a larger request on a class that cannot expand should fail",
			cluster: cluster{objects: with(claim("standard", "500Gi"), sec)},
			cfg:     func(c *preflight.Config) { c.Upgrade, c.StorageRequest = true, "1Ti" },
			status:  preflight.Fail,
			want:    `pvc.storageRequest grows the release's PersistentVolumeClaim connected-registry/cr-connected-registry-data from 500Gi to 1Ti, but its StorageClass "standard" does not allow volume expansion: keep pvc.storageRequest=500Gi`,
		},
		{
			name:    "on upgrade a larger request on a class that expands should pass",
			cluster: cluster{objects: with(growable, claim("fast", "500Gi"), sec)},
			cfg:     func(c *preflight.Config) { c.Upgrade, c.StorageRequest = true, "1Ti" },
			want:    `the release's PersistentVolumeClaim connected-registry/cr-connected-registry-data keeps its StorageClass "fast" and 500Gi of cached images`,
		},
	})
}

func TestNodeSelector(t *testing.T) {
	t.Parallel()
	sec := inputSecret(map[string]string{"connectionString": goodCS})
	labelled := node("node-2", map[string]string{"containerd-configured-by": "connected-registry"})
	runTable(t, "node-selector", []testCase{
		{
			name: "trust on every node should pass",
			want: "trust distribution runs on every node",
		},
		{
			name:    "a node selector that matches a node should pass",
			cluster: cluster{objects: with(labelled, sec)},
			cfg:     func(c *preflight.Config) { c.UseNodeSelector = true },
			want:    "1 node labelled containerd-configured-by=connected-registry",
		},
		{
			name:   "a node selector that matches no node should fail with the label command",
			cfg:    func(c *preflight.Config) { c.UseNodeSelector = true },
			status: preflight.Fail,
			want:   "trustDistribution.useNodeSelector=true, but no node is labelled containerd-configured-by=connected-registry, so no node would trust the registry: label the nodes that pull from it (kubectl label node <node> containerd-configured-by=connected-registry), or set trustDistribution.useNodeSelector=false",
		},
		{
			name: "no trust distribution should pass",
			cfg:  func(c *preflight.Config) { c.TrustDistribution, c.UseNodeSelector = false, true },
			want: "trust distribution is off",
		},
		{
			name:   "a registry node selector that matches no node should fail",
			cfg:    func(c *preflight.Config) { c.RegistryNodeSelector = []string{"disk=ssd"} },
			status: preflight.Fail,
			want:   "registry.nodeSelector disk=ssd matches no node, so the registry pod could not be scheduled: label a node with it, or change registry.nodeSelector",
		},
		{
			name: "a registry node selector that matches should pass",
			cfg:  func(c *preflight.Config) { c.RegistryNodeSelector = []string{"kubernetes.io/os=linux"} },
			want: "registry.nodeSelector kubernetes.io/os=linux matches 1 node; trust distribution runs on every node",
		},
	})
}

func namespaceWith(labels map[string]string) []runtime.Object {
	objects := []runtime.Object{inputSecret(map[string]string{"connectionString": goodCS})}
	for _, o := range defaultObjects() {
		if n, isNS := o.(*corev1.Namespace); isNS {
			n = n.DeepCopy()
			n.Labels = labels
			o = n
		}
		objects = append(objects, o)
	}
	return objects
}

func TestPodSecurity(t *testing.T) {
	t.Parallel()
	fixes := "label the namespace for the privileged level (kubectl label namespace connected-registry pod-security.kubernetes.io/enforce=privileged --overwrite), " +
		"or set trustDistribution.enabled=false and give the nodes the registry's CA yourself"
	runTable(t, "pod-security", []testCase{
		{
			name: "a namespace without Pod Security labels should pass, saying the agent needs privileged",
			want: "namespace connected-registry sets no Pod Security level (the cluster's default applies; the trust agent needs privileged)",
		},
		{
			name:    "a namespace enforcing restricted should fail with trust distribution on, naming both fixes",
			cluster: cluster{objects: namespaceWith(map[string]string{preflight.PSSEnforceLabel: "restricted"})},
			status:  preflight.Fail,
			want: "namespace connected-registry enforces the Pod Security level restricted (pod-security.kubernetes.io/enforce=restricted), which refuses the trust agent: " +
				"its hostPath volumes need the privileged level, so its DaemonSet would never start: " + fixes,
		},
		{
			name:    "a namespace enforcing baseline should fail too, since baseline forbids hostPath",
			cluster: cluster{objects: namespaceWith(map[string]string{preflight.PSSEnforceLabel: "baseline"})},
			status:  preflight.Fail,
			want: "namespace connected-registry enforces the Pod Security level baseline (pod-security.kubernetes.io/enforce=baseline), which refuses the trust agent: " +
				"its hostPath volumes need the privileged level, so its DaemonSet would never start: " + fixes,
		},
		{
			name:    "a namespace enforcing privileged should pass",
			cluster: cluster{objects: namespaceWith(map[string]string{preflight.PSSEnforceLabel: "privileged"})},
			want:    "namespace connected-registry enforces the Pod Security level privileged, which admits the trust agent",
		},
		{
			name:    "audit and warn labels above privileged should warn",
			cluster: cluster{objects: namespaceWith(map[string]string{preflight.PSSAuditLabel: "restricted", preflight.PSSWarnLabel: "baseline"})},
			status:  preflight.Warn,
			want: "namespace connected-registry has pod-security.kubernetes.io/audit=restricted and pod-security.kubernetes.io/warn=baseline: the trust agent's " +
				"hostPath volumes will be reported as violations, though admitted; to silence them, " + fixes,
		},
		{
			name:    "a restricted namespace should pass with trust distribution off",
			cluster: cluster{objects: namespaceWith(map[string]string{preflight.PSSEnforceLabel: "restricted"})},
			cfg:     func(c *preflight.Config) { c.TrustDistribution = false },
			want:    "namespace connected-registry enforces Pod Security level restricted; trust distribution is off, and the registry and hook pods meet restricted",
		},
	})
}
