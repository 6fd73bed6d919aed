package preflight_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/internal/preflight"
)

// reportCluster is a cluster where a generated certificate installs, with the hook Secret holding cs.
func reportCluster(cs string) *fake.Clientset {
	client := fake.NewClientset(
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16"}}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}}, Provisioner: "x"},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: input, Namespace: ns}, Data: map[string][]byte{"connectionString": []byte(cs)}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
	)
	client.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, a.(k8stesting.CreateAction).GetObject(), nil
	})
	return client
}

func reportChecker(client *fake.Clientset) *preflight.Checker {
	cfg := baseConfig()
	cfg.TLSSource, cfg.CertManagerEnabled, cfg.CertManagerInstall = preflight.SourceGenerated, false, false
	return &preflight.Checker{Client: client, Config: cfg, Clock: fakeClock{now}}
}

func TestReport(t *testing.T) {
	t.Parallel()

	t.Run("a good release should print one ok line per check and pass", func(t *testing.T) {
		t.Parallel()
		client := reportCluster(goodCS)
		var out bytes.Buffer
		msg, err := reportChecker(client).Report(context.Background(), &out)
		require.NoError(t, err)
		require.Equal(t, `connection-string: ok: connected registry edge1 syncs from https://contoso.azurecr.io with token edge1-sync-token
parent: ok: not checked: no parent URL given
cluster-ip: ok: service.clusterIP 10.96.0.50 is inside the service CIDR 10.96.0.0/16 and free
cert-manager: ok: not used: the TLS source is generated
tls: ok: certgen generates a CA and a serving certificate (ECDSA 256) for 10.96.0.50, cr-connected-registry, cr-connected-registry.connected-registry, cr-connected-registry.connected-registry.svc, cr-connected-registry.connected-registry.svc.cluster.local
storage-class: ok: pvc.storageClassName is empty: the default StorageClass standard provisions the cache volume
object-storage: ok: storage.type=pvc: the cache is on the release's volume
node-selector: ok: trust distribution runs on every node
pod-security: ok: namespace connected-registry sets no Pod Security level (the cluster's default applies; the trust agent needs privileged)
client-tokens: ok: client tokens are off: pulls are anonymous inside the cluster network
`, out.String())
		require.Equal(t, "preflight: 10 checks passed\n", msg)
		_, err = client.CoreV1().Secrets(ns).Get(context.Background(), input, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "the hook Secret is deleted once read: %v", err)
	})

	t.Run("a warning should become an Event on the release's Service, where users look after Helm deleted the Job", func(t *testing.T) {
		t.Parallel()
		client := reportCluster(goodCS)
		_, err := client.CoreV1().Namespaces().Update(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{preflight.PSSWarnLabel: "restricted"}}}, metav1.UpdateOptions{})
		require.NoError(t, err)
		var out bytes.Buffer
		msg, err := reportChecker(client).Report(context.Background(), &out)
		require.NoError(t, err)
		require.Equal(t, "preflight: 10 checks passed, 1 with a warning (pod-security)\n", strings.SplitAfter(msg, "\n")[0])
		events, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, events.Items, 1)
		ev := events.Items[0]
		require.Equal(t, corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: ns, Name: svcName}, ev.InvolvedObject)
		require.Equal(t, corev1.EventTypeWarning, ev.Type)
		require.Equal(t, preflight.ReasonWarning, ev.Reason)
		require.True(t, strings.HasPrefix(ev.Message, "pod-security: warn: namespace connected-registry has pod-security.kubernetes.io/warn=restricted"), ev.Message)
	})

	t.Run("a failing check should fail with the failures in the termination message", func(t *testing.T) {
		t.Parallel()
		c := reportChecker(reportCluster(strings.Replace(goodCS, "https", "ftp", 1)))
		c.Config.ClusterIP = "10.97.0.1"
		c.Config.UseNodeSelector = true
		var out bytes.Buffer
		msg, err := c.Report(context.Background(), &out)
		require.ErrorIs(t, err, preflight.ErrChecksFailed)
		require.EqualError(t, err, "preflight checks failed: 3 of 10 (connection-string, cluster-ip, node-selector); the lines above name each value and its fix; Helm 3 shows only BackoffLimitExceeded: run kubectl connected-registry check --pre with the install's values to see these lines before installing")
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 10)
		require.Equal(t, `preflight: 3 of 10 checks failed (connection-string, cluster-ip, node-selector); Helm 3 shows only BackoffLimitExceeded: run kubectl connected-registry check --pre with the install's values to see these lines before installing
connection-string: fail: connectionString: connection string field ParentEndpointProtocol is "ftp"; use https (or http for a parent without TLS)
cluster-ip: fail: service.clusterIP 10.97.0.1 is outside the cluster's service CIDR 10.96.0.0/16: choose a free address in 10.96.0.0/16; the lower end of the range is kept for fixed ClusterIPs, and 10.96.0.1 is free (--set service.clusterIP=10.96.0.1)
node-selector: fail: trustDistribution.useNodeSelector=true, but no node is labelled containerd-configured-by=connected-registry, so no node would trust the registry: label the nodes that pull from it (kubectl label node <node> containerd-configured-by=connected-registry), or set trustDistribution.useNodeSelector=false
`, msg)
		require.NotContains(t, out.String()+msg, "s3cret-password")
	})
}
