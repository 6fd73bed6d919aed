package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/cmd/kubectl-connected_registry/app"
	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/check"
	"github.com/connected-registry/connected-registry/internal/check/pre"
	"github.com/connected-registry/connected-registry/internal/preflight"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

const (
	ns      = "connected-registry"
	relName = "cr"
	svcName = "cr-connected-registry"
)

// closedPort is a loopback address nothing listens on: the parent check's connection is refused at once.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// cluster is a fake cluster with a service range 10.96.0.0/16, a default StorageClass, one Linux node and the
// release's namespace, plus extra objects. A dry-run create of a Service allocates as the API server does.
func cluster(t *testing.T, extra ...runtime.Object) *fake.Clientset {
	t.Helper()
	objects := append([]runtime.Object{
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16"}}},
		&networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: "10.96.0.1"}, Spec: networkingv1.IPAddressSpec{
			ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: "default", Name: "kubernetes"}}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}}, Provisioner: "x"},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"kubernetes.io/os": "linux"}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
	}, extra...)
	hasNS := false
	for _, o := range extra {
		if n, ok := o.(*corev1.Namespace); ok && n.Name == ns {
			hasNS = true
		}
	}
	if !hasNS {
		objects = append(objects, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	client := fake.NewClientset(objects...)
	client.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		svc := a.(k8stesting.CreateAction).GetObject().(*corev1.Service)
		ip := netip.MustParseAddr(svc.Spec.ClusterIP)
		invalid := func(detail string) error {
			return apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, field.ErrorList{
				field.Invalid(field.NewPath("spec", "clusterIPs"), []string{svc.Spec.ClusterIP}, detail)})
		}
		if !netip.MustParsePrefix("10.96.0.0/16").Contains(ip) {
			return true, nil, invalid("failed to allocate IP " + ip.String() + ": the provided IP (" + ip.String() + ") is not in the valid range. The range of valid IPs is 10.96.0.0/16")
		}
		for _, o := range objects {
			if addr, ok := o.(*networkingv1.IPAddress); ok && addr.Name == ip.String() {
				return true, nil, invalid("failed to allocate IP " + ip.String() + ": provided IP is already allocated")
			}
		}
		return true, svc, nil
	})
	return client
}

// pki is a CA and serving certificates for the BYOC cases, as base64 of PEM as the values take them.
type pki struct{ ca *certs.Pair }

func newPKI(t *testing.T) pki {
	t.Helper()
	ca, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "site CA", Key: certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: 365 * 24 * time.Hour}, time.Now())
	require.NoError(t, err)
	return pki{ca: ca}
}

func (p pki) leaf(t *testing.T, ip string, from time.Time, d time.Duration) *certs.Pair {
	t.Helper()
	l, err := certs.Issue(rand.Reader, p.ca, certs.Request{IPs: []netip.Addr{netip.MustParseAddr(ip)},
		DNSNames: []string{svcName, svcName + "." + ns, svcName + "." + ns + ".svc", svcName + "." + ns + ".svc.cluster.local"},
		Key:      certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: d}, from)
	require.NoError(t, err)
	return l
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestCheckPreGivesTheHooksVerdict renders the chart with bad values a user gives, and runs check --pre's path
// (PreLines: the values in memory) and the hook's path (the rendered args, the rendered hook Secret created in the
// cluster, preflight's Report as the Job runs it) on the same fake cluster: the failing check must be the expected
// one, and every line's message must be the hook's, word for word.
func TestCheckPreGivesTheHooksVerdict(t *testing.T) {
	t.Parallel()
	parent := closedPort(t)
	cs := "ConnectedRegistryName=edge1;SyncTokenName=edge1-sync-token;SyncTokenPassword=pw-0123456789abcdef;ParentGatewayEndpoint=" + parent + ";ParentEndpointProtocol=https"
	p := newPKI(t)
	now := time.Now()
	good := p.leaf(t, "10.96.0.50", now.Add(-time.Hour), 90*24*time.Hour)
	expired := p.leaf(t, "10.96.0.50", now.Add(-48*time.Hour), 24*time.Hour)
	wrongSAN := p.leaf(t, "10.96.0.99", now.Add(-time.Hour), 90*24*time.Hour)
	other := newPKI(t).leaf(t, "10.96.0.50", now.Add(-time.Hour), 90*24*time.Hour)
	byoc := func(crt, key, ca []byte) map[string]any {
		return map[string]any{"cert-manager.enabled": false, "cert-manager": map[string]any{"install": false},
			"tls.crt": b64(crt), "tls.key": b64(key), "tls.cacrt": b64(ca)}
	}
	tests := []struct {
		name    string
		values  map[string]any
		objects []runtime.Object
		// failing is the check that fails; render means the chart refuses the values before any hook runs.
		failing string
		want    string
	}{
		{name: "a good BYOC install should pass", values: byoc(good.CertPEM, good.KeyPEM, p.ca.CertPEM)},
		{name: "a connection string without a password should fail", values: map[string]any{"connectionString": strings.Replace(cs, "SyncTokenPassword=pw-0123456789abcdef;", "", 1)},
			failing: "render", want: "SyncTokenPassword"},
		{name: "a clusterIP outside the service range should fail", values: map[string]any{"service.clusterIP": "10.97.0.50"},
			failing: "cluster-ip", want: "10.97.0.50"},
		{name: "a clusterIP another Service holds should fail", values: map[string]any{"service.clusterIP": "10.96.0.77"},
			objects: []runtime.Object{&networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: "10.96.0.77"}, Spec: networkingv1.IPAddressSpec{
				ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: "other", Name: "web"}}}},
			failing: "cluster-ip", want: "other/web"},
		{name: "cert-manager not installed with install=false should fail", values: map[string]any{"cert-manager": map[string]any{"enabled": true, "install": false}},
			failing: "render", want: "cert-manager.install=false needs cert-manager in the cluster"},
		{name: "an expired certificate should fail", values: byoc(expired.CertPEM, expired.KeyPEM, p.ca.CertPEM), failing: "tls", want: "expired"},
		{name: "a certificate without the clusterIP should fail", values: byoc(wrongSAN.CertPEM, wrongSAN.KeyPEM, p.ca.CertPEM), failing: "tls", want: "10.96.0.50"},
		{name: "a key of another certificate should fail", values: byoc(good.CertPEM, other.KeyPEM, p.ca.CertPEM), failing: "tls", want: "key"},
		{name: "a certificate of another CA should fail", values: byoc(other.CertPEM, other.KeyPEM, p.ca.CertPEM), failing: "tls", want: "CA"},
		{name: "a tls.secret that does not exist should fail", values: map[string]any{"cert-manager.enabled": false, "cert-manager": map[string]any{"install": false}, "tls.secret": "site-tls"},
			failing: "tls", want: "site-tls"},
		{name: "a storage class that does not exist should fail", values: map[string]any{"pvc.storageClassName": "fast-ssd"}, failing: "storage-class", want: "fast-ssd"},
		{name: "a registry node selector matching no node should fail", values: map[string]any{"registry": map[string]any{"nodeSelector": map[string]any{"site": "edge"}}},
			failing: "node-selector", want: "site=edge"},
		{name: "a namespace enforcing restricted with trust distribution on should fail",
			objects: []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}},
			failing: "pod-security", want: "trustDistribution.enabled=false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vals := map[string]any{"connectionString": cs, "service.clusterIP": "10.96.0.50",
				"cert-manager": map[string]any{"enabled": false, "install": false}}
			for k, v := range tc.values {
				vals[k] = v
			}
			r := pre.Render{Chart: chartrender.ChartDir(), Release: relName, Namespace: ns, KubeVersion: chartrender.DefaultKubeVersion}
			ctx := context.Background()
			lines := app.PreLines(ctx, cluster(t, tc.objects...), r, vals)
			if tc.failing == "render" {
				require.Len(t, lines, 1)
				require.Equal(t, app.CheckValues, lines[0].Check)
				require.Equal(t, check.Fail, lines[0].Status)
				require.Contains(t, lines[0].Message, tc.want)
				_, err := r.Preflight(vals)
				require.EqualError(t, err, lines[0].Message, "helm install shows the same message")
				return
			}

			// The hook: the chart's Job args and its Secret, as Helm creates them before the Job.
			hook, err := r.Preflight(vals)
			require.NoError(t, err)
			client := cluster(t, tc.objects...)
			if hook.Config.InputSecret != "" {
				data := map[string][]byte{}
				for k, v := range hook.Input {
					data[k] = []byte(v)
				}
				_, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hook.Config.InputSecret, Namespace: ns}, Data: data}, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			require.NotEqual(t, app.CheckNamespace, lines[0].Check, "the namespace exists")
			var out bytes.Buffer
			_, reportErr := (&preflight.Checker{Client: client, Config: hook.Config}).Report(ctx, &out)
			hookLines := strings.Split(strings.TrimSpace(out.String()), "\n")
			require.Len(t, lines, len(hookLines))
			var failed []string
			for i, l := range lines {
				require.Equal(t, hookLines[i], l.Check+": "+map[check.Status]string{check.OK: "ok", check.Warn: "warn", check.Fail: "fail"}[l.Status]+": "+l.Message,
					"check --pre's line %d is not the hook's", i)
				if l.Status == check.Fail {
					failed = append(failed, l.Check)
					require.NotEmpty(t, l.Hint)
					require.Contains(t, l.Message, tc.want)
				}
				require.NotContains(t, l.Message, "pw-0123456789abcdef", "no line may echo the sync token's password")
			}
			if tc.failing == "" {
				require.Empty(t, failed)
				require.NoError(t, reportErr)
			} else {
				require.Equal(t, []string{tc.failing}, failed)
				require.ErrorIs(t, reportErr, preflight.ErrChecksFailed)
			}
		})
	}
}

// TestCheckPreNamesAMissingNamespaceAndWhereItAsksTheParent: before helm install --create-namespace the namespace
// does not exist, which check --pre says first; and the parent is asked from the workstation, which its hint says.
func TestCheckPreNamesAMissingNamespaceAndWhereItAsksTheParent(t *testing.T) {
	t.Parallel()
	cs := "ConnectedRegistryName=edge1;SyncTokenName=edge1-sync-token;SyncTokenPassword=pw-0123456789abcdef;ParentGatewayEndpoint=" + closedPort(t) + ";ParentEndpointProtocol=https"
	vals := map[string]any{"connectionString": cs, "service.clusterIP": "10.96.0.50", "cert-manager": map[string]any{"enabled": false, "install": false}}
	r := pre.Render{Chart: chartrender.ChartDir(), Release: relName, Namespace: "not-yet", KubeVersion: chartrender.DefaultKubeVersion}
	lines := app.PreLines(context.Background(), cluster(t), r, vals)
	require.Equal(t, check.Line{Check: app.CheckNamespace, Status: check.Warn,
		Message: "namespace not-yet does not exist yet: the checks that read it judge a namespace without labels",
		Hint:    "helm install --create-namespace creates it without Pod Security labels; to label it first, create it and run check --pre again"}, lines[0])
	for _, l := range lines {
		if l.Check == "parent" {
			require.Equal(t, check.Warn, l.Status)
			require.Contains(t, l.Hint, "check --pre asks the parent from this workstation, the hook asks it from the cluster")
			return
		}
	}
	t.Fatal("no parent line")
}
