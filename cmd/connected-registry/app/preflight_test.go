package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

func preflightCluster(cs string) *fake.Clientset {
	client := fake.NewClientset(
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16"}}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}}, Provisioner: "x"},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cr-connected-registry-preflight", Namespace: namespace}, Data: map[string][]byte{"connectionString": []byte(cs)}},
	)
	client.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, a.(k8stesting.CreateAction).GetObject(), nil
	})
	return client
}

func preflightOptions(client *fake.Clientset, termLog string) *app.PreflightOptions {
	o := &app.PreflightOptions{
		KubeOptions:    app.KubeOptions{Namespace: namespace, Timeout: time.Minute, LogLevel: "info", Client: client, Clock: fakeClock{now}},
		TerminationLog: termLog,
	}
	c := &o.Config
	c.Service, c.PVC, c.InputSecret, c.ClusterIP, c.DNSNames = "cr-connected-registry", "cr-connected-registry-data", "cr-connected-registry-preflight", "10.96.0.50", serviceDNS
	c.TLSSource, c.KeyAlgorithm, c.KeySize = "generated", "ECDSA", 256
	c.StorageRequest, c.TrustDistribution = "500Gi", true
	return o
}

func TestPreflightReport(t *testing.T) {
	t.Parallel()
	const good = "ConnectedRegistryName=edge1;SyncTokenName=edge1-sync-token;SyncTokenPassword=s3cret-password;ParentGatewayEndpoint=contoso.westus2.data.azurecr.io;ParentEndpointProtocol=https"

	t.Run("a good release should print one ok line per check and pass", func(t *testing.T) {
		t.Parallel()
		termLog := filepath.Join(t.TempDir(), "termination-log")
		o := preflightOptions(preflightCluster(good), termLog)
		require.NoError(t, o.Complete())
		var out bytes.Buffer
		require.NoError(t, o.Run(context.Background(), &out))
		require.Equal(t, `connection-string: ok: connected registry edge1 syncs from https://contoso.azurecr.io with token edge1-sync-token
cluster-ip: ok: service.clusterIP 10.96.0.50 is inside the service CIDR 10.96.0.0/16 and free
cert-manager: ok: not used: the TLS source is generated
tls: ok: certgen generates a CA and a serving certificate (ECDSA 256) for 10.96.0.50, cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local
storage-class: ok: pvc.storageClassName is empty: the default StorageClass standard provisions the cache volume
node-selector: ok: trust distribution runs on every node
`, out.String())
		msg, err := os.ReadFile(termLog)
		require.NoError(t, err)
		require.Equal(t, "preflight: 6 checks passed\n", string(msg))
	})

	t.Run("a failing check should exit 1 with the failures in the termination message", func(t *testing.T) {
		t.Parallel()
		termLog := filepath.Join(t.TempDir(), "termination-log")
		o := preflightOptions(preflightCluster(strings.Replace(good, "https", "ftp", 1)), termLog)
		o.Config.ClusterIP = "10.97.0.1"
		o.Config.UseNodeSelector = true
		require.NoError(t, o.Complete())
		var out bytes.Buffer
		err := o.Run(context.Background(), &out)
		require.ErrorIs(t, err, app.ErrChecksFailed)
		require.EqualError(t, err, "preflight checks failed: 3 of 6 (connection-string, cluster-ip, node-selector); the lines above name each value and its fix")
		require.Equal(t, 1, app.ExitCode(err))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 6)
		msg, err := os.ReadFile(termLog)
		require.NoError(t, err)
		require.Equal(t, `preflight: 3 of 6 checks failed (connection-string, cluster-ip, node-selector)
connection-string: fail: connectionString: connection string field ParentEndpointProtocol is "ftp"; use https (or http for a parent without TLS)
cluster-ip: fail: service.clusterIP 10.97.0.1 is outside the cluster's service CIDR 10.96.0.0/16: choose a free address in 10.96.0.0/16; the lower end of the range is kept for fixed ClusterIPs, and 10.96.0.1 is free (--set service.clusterIP=10.96.0.1)
node-selector: fail: trustDistribution.useNodeSelector=true, but no node is labelled containerd-configured-by=connected-registry, so no node would trust the registry: label the nodes that pull from it (kubectl label node <node> containerd-configured-by=connected-registry), or set trustDistribution.useNodeSelector=false
`, string(msg))
		require.NotContains(t, out.String()+string(msg), "s3cret-password")
	})
}

func TestPreflightChartArgs(t *testing.T) {
	t.Parallel()
	// The args of templates/preflight/job.yaml, as the byoc scenario renders them.
	args := []string{"hooks", "preflight", "--namespace=connected-registry", "--upgrade=false", "--service=cr-connected-registry",
		"--pvc=cr-connected-registry-data", "--input-secret=cr-connected-registry-preflight", "--cluster-ip=10.96.0.50",
		"--dns=" + strings.Join(serviceDNS, ","), "--tls-source=byoc", "--tls-secret=", "--key-algorithm=ECDSA", "--key-size=256",
		"--cert-manager-enabled=false", "--cert-manager-install=false", "--storage-class=", "--storage-request=500Gi",
		"--trust-distribution=true", "--use-node-selector=false", "--registry-node-selector=", "--log-level=info", "--timeout=90s",
		"--kubeconfig=/nonexistent/kubeconfig"}
	r := execute(t, nil, "", args...)
	require.ErrorContains(t, r.err, "configuring the API client: ")

	r = execute(t, nil, "", "hooks", "preflight", "--namespace=x", "--service=s", "--cluster-ip=10.96.0.50", "--tls-source=secret")
	require.EqualError(t, r.err, "--tls-source=secret needs --tls-secret: tls.secret")
	require.Equal(t, 2, app.ExitCode(r.err))
}
