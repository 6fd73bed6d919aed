package statusmetrics

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/trust/bundle"
)

const ns = "registry"

func certPEM(t *testing.T, cn string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func bundleCM(ca []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cr-trust-bundle", Namespace: ns}, Data: map[string]string{bundle.Key: string(ca)}}
}

// gather is the registry's text exposition, only the lines of the named metrics, sorted.
func gather(t *testing.T, c *Collector, names ...string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	var lines []string
	for _, f := range families {
		for _, n := range names {
			if f.GetName() == n {
				for _, m := range f.GetMetric() {
					var labels []string
					for _, l := range m.GetLabel() {
						labels = append(labels, l.GetName()+"="+l.GetValue())
					}
					lines = append(lines, n+"{"+strings.Join(labels, ",")+"} "+formatValue(m.GetGauge().GetValue()))
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func formatValue(v float64) string { return big.NewFloat(v).Text('f', -1) }

func TestNodeTrust(t *testing.T) {
	t.Parallel()
	ca := certPEM(t, "current CA", time.Now().Add(time.Hour))
	old := certPEM(t, "old CA", time.Now().Add(time.Hour))
	client := fake.NewClientset(bundleCM(ca),
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "cr-trust-agent", Namespace: ns}, Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 4}})
	acks := &bundle.Acks{Client: client, Namespace: ns, Release: "cr"}
	ctx := context.Background()
	require.NoError(t, acks.Record(ctx, "node-a", bundle.AckState{Fingerprint: bundle.Fingerprint(ca), Containerd: bundle.ContainerdUses}))
	require.NoError(t, acks.Record(ctx, "node-b", bundle.AckState{Fingerprint: bundle.Fingerprint(ca), Containerd: bundle.ContainerdIgnores}))
	require.NoError(t, acks.Record(ctx, "node-c", bundle.AckState{Fingerprint: bundle.Fingerprint(old), Containerd: bundle.ContainerdUses}))
	require.NoError(t, acks.Ack(ctx, "node-d", bundle.Fingerprint(ca)))

	c := &Collector{Client: client, Namespace: ns, Bundle: "cr-trust-bundle", Acks: acks, DaemonSet: "cr-trust-agent"}
	require.Equal(t, strings.Join([]string{
		"connected_registry_node_trust_ignored{node=node-a} 0",
		"connected_registry_node_trust_ignored{node=node-b} 1",
		"connected_registry_node_trust_ignored{node=node-c} 0",
		"connected_registry_node_trust{node=node-a} 1",
		"connected_registry_node_trust{node=node-b} 1",
		"connected_registry_node_trust{node=node-c} 0",
		"connected_registry_node_trust{node=node-d} 1",
		"connected_registry_trust_nodes_desired{} 4",
	}, "\n"), gather(t, c, MetricNodeTrust, MetricNodeTrustIgnored, MetricTrustNodesDesired),
		"node-c acknowledged an earlier CA; node-d's agent predates the containerd report")
}

func TestNodeTrustBeforeABundleIsPublished(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(bundleCM(nil))
	acks := &bundle.Acks{Client: client, Namespace: ns, Release: "cr"}
	require.NoError(t, acks.Ack(context.Background(), "node-a", ""))
	c := &Collector{Client: client, Namespace: ns, Bundle: "cr-trust-bundle", Acks: acks}
	require.Equal(t, "connected_registry_node_trust{node=node-a} 0", gather(t, c, MetricNodeTrust),
		"no node trusts a CA that is not published")
}

func TestSync(t *testing.T) {
	t.Parallel()
	success := time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	started := time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)
	st := &presync.Status{Schedule: "0 2 * * *", Run: presync.Run{Started: started, Result: presync.ResultIncomplete},
		Repositories: []*presync.RepositoryStatus{
			{Name: "library/app", LastSuccess: &success, BytesFetched: 1234},
			{Name: "library/db", Error: "outside the sync token's scope", ConsecutiveFailures: 3},
		}}
	data, err := st.JSON()
	require.NoError(t, err)
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cr-sync-status", Namespace: ns},
		Data: map[string]string{presync.StatusKey: string(data)}})
	c := &Collector{Client: client, Namespace: ns, SyncStatus: "cr-sync-status"}
	require.Equal(t, strings.Join([]string{
		"connected_registry_sync_bytes{repository=library/app} 1234",
		"connected_registry_sync_bytes{repository=library/db} 0",
		"connected_registry_sync_consecutive_failures{repository=library/app} 0",
		"connected_registry_sync_consecutive_failures{repository=library/db} 3",
		"connected_registry_sync_last_run_timestamp_seconds{result=incomplete} 1796436000",
		"connected_registry_sync_last_success_timestamp_seconds{repository=library/app} 1796349600",
	}, "\n"), gather(t, c, MetricSyncBytes, MetricSyncFailures, MetricSyncLastRun, MetricSyncLastSuccess),
		"a repository never synced has no last success")
}

func TestSyncBeforeTheFirstRun(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cr-sync-status", Namespace: ns}})
	c := &Collector{Client: client, Namespace: ns, SyncStatus: "cr-sync-status"}
	require.Empty(t, gather(t, c, MetricSyncBytes, MetricSyncLastRun), "the chart renders the status ConfigMap empty")
}

func TestCertificateExpiry(t *testing.T) {
	t.Parallel()
	leafExpiry := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	caExpiry := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	oldCAExpiry := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cr-tls", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			"tls.crt": certPEM(t, "leaf", leafExpiry),
			"ca.crt":  append(certPEM(t, "ca", caExpiry), certPEM(t, "older ca", oldCAExpiry)...),
		}})
	c := &Collector{Client: client, Namespace: ns, Secret: "cr-tls"}
	require.Equal(t, strings.Join([]string{
		"connected_registry_certificate_expiry_timestamp_seconds{certificate=ca} 1830297600",
		"connected_registry_certificate_expiry_timestamp_seconds{certificate=serving} 1798761600",
	}, "\n"), gather(t, c, MetricCertificateExpiry), "the CA that expires first counts")
}

func TestAReadThatFailsLeavesTheOthers(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cr-tls", Namespace: ns},
		Data: map[string][]byte{"tls.crt": certPEM(t, "leaf", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))}})
	c := &Collector{Client: client, Namespace: ns, Secret: "cr-tls", SyncStatus: "missing"}
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	_, err := reg.Gather()
	require.ErrorContains(t, err, `reading the sync status ConfigMap missing: configmaps "missing" not found`)
	n, err := testutil.GatherAndCount(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		families, _ := reg.Gather()
		return families, nil
	}), MetricCertificateExpiry)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the certificate's expiry is still served")
}
