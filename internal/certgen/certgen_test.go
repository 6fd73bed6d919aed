package certgen_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/connected-registry/connected-registry/internal/certgen"
	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/tlscheck"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type fakeClock struct{ t time.Time }

func (c fakeClock) Now() time.Time { return c.t }

const (
	namespace = "connected-registry"
	tlsSecret = "cr-connected-registry-tls"
	caSecret  = "cr-connected-registry-tls-ca"
)

var serviceDNS = []string{"cr-connected-registry", "cr-connected-registry.connected-registry", "cr-connected-registry.connected-registry.svc", "cr-connected-registry.connected-registry.svc.cluster.local"}

// generate runs certgen as the chart's Job does, on client at the time at, and returns its report.
func generate(t *testing.T, client *fake.Clientset, at time.Time, mutate ...func(*certgen.Generator)) (string, error) {
	t.Helper()
	g := &certgen.Generator{
		Client: client, Namespace: namespace, Clock: fakeClock{at},
		Secret: tlsSecret, CASecret: caSecret, IPs: []netip.Addr{netip.MustParseAddr("10.96.0.50")}, DNSNames: serviceDNS,
		Key: certs.KeySpec{Algorithm: "ECDSA", Size: 256}, Duration: certs.DefaultLeafDuration, CADuration: certs.DefaultCADuration,
	}
	for _, f := range mutate {
		f(g)
	}
	var out bytes.Buffer
	err := g.Run(context.Background(), &out)
	return out.String(), err
}

func secretOf(t *testing.T, client *fake.Clientset, name string) *corev1.Secret {
	t.Helper()
	s, err := client.CoreV1().Secrets(namespace).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return s
}

func leafOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(s.Data["tls.crt"])
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func TestCertgenFirstRunCreatesValidMaterial(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	out, err := generate(t, client, now)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Equal(t, `CA: generated "connected-registry CA" (ECDSA 256), valid until 2036-11-24T12:00:00Z: Secret connected-registry/cr-connected-registry-tls-ca did not exist`, lines[0])
	require.Equal(t, "serving certificate: issued for IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local, valid until 2027-02-25T12:00:00Z, renewed from 2027-01-26T11:58:20Z: Secret connected-registry/cr-connected-registry-tls did not exist", lines[1])
	require.Equal(t, "Secret connected-registry/cr-connected-registry-tls-ca: created", lines[2])
	require.Equal(t, "Secret connected-registry/cr-connected-registry-tls: created", lines[3])

	s := secretOf(t, client, tlsSecret)
	require.Equal(t, corev1.SecretTypeTLS, s.Type)
	require.Equal(t, map[string]string{"app.kubernetes.io/part-of": "connected-registry", "app.kubernetes.io/managed-by": "connected-registry-certgen", "app.kubernetes.io/component": "tls"}, s.Labels)
	require.Empty(t, s.Annotations, "no Helm ownership: the Secret survives upgrades")
	require.ElementsMatch(t, []string{"tls.crt", "tls.key", "ca.crt"}, keys(s.Data))
	ca := secretOf(t, client, caSecret)
	require.Equal(t, "ca", ca.Labels["app.kubernetes.io/component"])
	require.Equal(t, ca.Data["tls.crt"], s.Data["ca.crt"])
	require.ElementsMatch(t, []string{"tls.crt", "tls.key"}, keys(ca.Data), "the registry's Secret never holds the CA key")

	// What certgen writes passes the checks users' own Secrets face, without a warning.
	r := tlscheck.CheckSecret(tlscheck.Secret{Namespace: namespace, Name: tlsSecret, Found: true, Type: string(s.Type), Data: s.Data},
		tlscheck.Options{ClusterIP: netip.MustParseAddr("10.96.0.50"), DNSNames: serviceDNS, Clock: fakeClock{now}})
	require.Empty(t, r.Problems(), "report: %v", r.Results)
	leaf := leafOf(t, s)
	spec, _ := certs.SpecOf(leaf.PublicKey)
	require.Equal(t, certs.KeySpec{Algorithm: "ECDSA", Size: 256}, spec, "ECDSA P-256 by default")
}

func TestCertgenIsIdempotent(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	_, err := generate(t, client, now)
	require.NoError(t, err)
	before := map[string]*corev1.Secret{tlsSecret: secretOf(t, client, tlsSecret), caSecret: secretOf(t, client, caSecret)}
	client.ClearActions()

	out, err := generate(t, client, now.Add(30*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, `CA: kept "connected-registry CA" (ECDSA 256), valid until 2036-11-24T12:00:00Z
serving certificate: kept for IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local, valid until 2027-02-25T12:00:00Z, renewed from 2027-01-26T11:58:20Z
Secret connected-registry/cr-connected-registry-tls-ca: unchanged
Secret connected-registry/cr-connected-registry-tls: unchanged
`, out)
	require.Empty(t, writeCalls(client), "a second run writes nothing")
	for name, s := range before {
		require.Equal(t, s, secretOf(t, client, name), "Secret %s is byte-identical", name)
	}
}

func TestCertgenReissues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		at       time.Time
		mutate   func(*certgen.Generator)
		wantLine string
		check    func(t *testing.T, leaf *x509.Certificate)
	}{
		{
			name:     "a new ClusterIP should reissue the serving certificate and keep the CA",
			at:       now.Add(time.Hour),
			mutate:   func(g *certgen.Generator) { g.IPs = []netip.Addr{netip.MustParseAddr("10.96.0.60")} },
			wantLine: "serving certificate: issued for IP:10.96.0.60, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local, valid until 2027-02-25T13:00:00Z, renewed from 2027-01-26T12:58:20Z: the certificate in Secret connected-registry/cr-connected-registry-tls could not be kept: its names (IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local) are not the requested ones (IP:10.96.0.60, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local)",
			check: func(t *testing.T, leaf *x509.Certificate) {
				require.Equal(t, "10.96.0.60", leaf.IPAddresses[0].String())
			},
		},
		{
			name:     "at two thirds of its lifetime the serving certificate should be renewed and the CA kept",
			at:       time.Date(2027, 1, 26, 11, 58, 20, 0, time.UTC),
			wantLine: "serving certificate: issued for IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local, valid until 2027-04-26T11:58:20Z, renewed from 2027-03-27T11:56:40Z: the certificate in Secret connected-registry/cr-connected-registry-tls could not be kept: it is due for renewal since 2027-01-26T11:58:20Z (two thirds of its lifetime)",
		},
		{
			name:     "another key algorithm should reissue the serving certificate with it and keep the CA",
			at:       now.Add(time.Hour),
			mutate:   func(g *certgen.Generator) { g.Key = certs.KeySpec{Algorithm: "RSA", Size: 2048} },
			wantLine: "serving certificate: issued for IP:10.96.0.50, DNS:cr-connected-registry, DNS:cr-connected-registry.connected-registry, DNS:cr-connected-registry.connected-registry.svc, DNS:cr-connected-registry.connected-registry.svc.cluster.local, valid until 2027-02-25T13:00:00Z, renewed from 2027-01-26T12:58:20Z: the certificate in Secret connected-registry/cr-connected-registry-tls could not be kept: its key is not RSA 2048",
			check: func(t *testing.T, leaf *x509.Certificate) {
				spec, _ := certs.SpecOf(leaf.PublicKey)
				require.Equal(t, certs.KeySpec{Algorithm: "RSA", Size: 2048}, spec)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset()
			_, err := generate(t, client, now)
			require.NoError(t, err)
			ca := secretOf(t, client, caSecret)
			oldLeaf := secretOf(t, client, tlsSecret)
			client.ClearActions()

			var mutate []func(*certgen.Generator)
			if tc.mutate != nil {
				mutate = append(mutate, tc.mutate)
			}
			out, err := generate(t, client, tc.at, mutate...)
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.True(t, strings.HasPrefix(lines[0], "CA: kept "), out)
			require.Equal(t, tc.wantLine, lines[1])
			require.Equal(t, "Secret connected-registry/cr-connected-registry-tls-ca: unchanged", lines[2])
			require.Equal(t, "Secret connected-registry/cr-connected-registry-tls: updated", lines[3])
			require.Equal(t, []string{"update " + tlsSecret}, writeCalls(client))

			require.Equal(t, ca, secretOf(t, client, caSecret), "the CA is kept")
			s := secretOf(t, client, tlsSecret)
			require.Equal(t, oldLeaf.Data["ca.crt"], s.Data["ca.crt"], "nodes keep trusting the same CA")
			require.NotEqual(t, oldLeaf.Data["tls.crt"], s.Data["tls.crt"])
			require.NotEqual(t, oldLeaf.Data["tls.key"], s.Data["tls.key"], "a reissued certificate has a new key")
			leaf := leafOf(t, s)
			roots := x509.NewCertPool()
			require.True(t, roots.AppendCertsFromPEM(s.Data["ca.crt"]))
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: tc.at})
			require.NoError(t, err)
			if tc.check != nil {
				tc.check(t, leaf)
			}
		})
	}
}

func TestCertgenRegeneratesTheCA(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		caAge  time.Duration
		caLife time.Duration
		want   string
	}{
		{
			name: "an expired CA should be regenerated", caAge: 11 * 365 * 24 * time.Hour, caLife: 10 * 365 * 24 * time.Hour,
			want: "the CA in Secret connected-registry/cr-connected-registry-tls-ca could not be kept: it expired on 2025-11-27T12:00:00Z",
		},
		{
			name: "a CA that would expire before a new serving certificate should be regenerated", caAge: 365 * 24 * time.Hour, caLife: 365*24*time.Hour + 30*24*time.Hour,
			want: "the CA in Secret connected-registry/cr-connected-registry-tls-ca could not be kept: it expires on 2026-12-27T12:00:00Z, before a serving certificate issued now would",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, err := certs.NewCA(rand.Reader, certs.Request{CommonName: "old CA", Key: certs.DefaultKeySpec, Duration: tc.caLife}, now.Add(-tc.caAge))
			require.NoError(t, err)
			oldLeaf, err := certs.Issue(rand.Reader, old, certs.Request{IPs: []netip.Addr{netip.MustParseAddr("10.96.0.50")}, DNSNames: serviceDNS, Key: certs.DefaultKeySpec, Duration: certs.DefaultLeafDuration}, now.Add(-time.Hour))
			require.NoError(t, err)
			labels := map[string]string{"app.kubernetes.io/part-of": "connected-registry", "app.kubernetes.io/managed-by": "connected-registry-certgen"}
			client := fake.NewClientset(
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caSecret, Namespace: namespace, Labels: labels}, Type: corev1.SecretTypeTLS,
					Data: map[string][]byte{"tls.crt": old.CertPEM, "tls.key": old.KeyPEM}},
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tlsSecret, Namespace: namespace, Labels: labels}, Type: corev1.SecretTypeTLS,
					Data: map[string][]byte{"tls.crt": oldLeaf.CertPEM, "tls.key": oldLeaf.KeyPEM, "ca.crt": old.CertPEM}},
			)
			out, err := generate(t, client, now)
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.True(t, strings.HasPrefix(lines[0], `CA: generated "connected-registry CA" (ECDSA 256), valid until 2036-11-24T12:00:00Z: `), out)
			require.True(t, strings.HasSuffix(lines[0], tc.want), lines[0])
			require.True(t, strings.HasSuffix(lines[1], "could not be kept: it was not issued by the current CA"), lines[1])
			require.Equal(t, []string{"Secret connected-registry/cr-connected-registry-tls-ca: updated", "Secret connected-registry/cr-connected-registry-tls: updated"}, lines[2:])
			ca, s := secretOf(t, client, caSecret), secretOf(t, client, tlsSecret)
			require.NotEqual(t, old.CertPEM, ca.Data["tls.crt"])
			require.Equal(t, ca.Data["tls.crt"], s.Data["ca.crt"])
			require.Equal(t, "ca", ca.Labels["app.kubernetes.io/component"], "labels are completed")
		})
	}
}

func TestCertgenOwnership(t *testing.T) {
	t.Parallel()
	byoc := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tlsSecret, Namespace: namespace,
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "Helm"},
			Annotations: map[string]string{"meta.helm.sh/release-name": "cr", "meta.helm.sh/release-namespace": namespace}},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("old"), "tls.key": []byte("old")},
	}

	t.Run("the Secret Helm made for tls.crt before should be taken over and kept from Helm's deletion", func(t *testing.T) {
		t.Parallel()
		client := fake.NewClientset(byoc.DeepCopy())
		out, err := generate(t, client, now)
		require.NoError(t, err)
		require.Contains(t, out, "Secret connected-registry/cr-connected-registry-tls: taken over from Helm and updated\n")
		s := secretOf(t, client, tlsSecret)
		require.Equal(t, map[string]string{"helm.sh/resource-policy": "keep"}, s.Annotations)
		require.Equal(t, "connected-registry-certgen", s.Labels["app.kubernetes.io/managed-by"])
	})

	t.Run("a Secret someone else made should not be touched", func(t *testing.T) {
		t.Parallel()
		foreign := byoc.DeepCopy()
		foreign.Labels, foreign.Annotations = nil, nil
		client := fake.NewClientset(foreign)
		_, err := generate(t, client, now)
		require.ErrorIs(t, err, certgen.ErrForeignSecret)
		require.EqualError(t, err, "the Secret exists and was not made by certgen: Secret connected-registry/cr-connected-registry-tls has no label app.kubernetes.io/managed-by=connected-registry-certgen and was not made by Helm or cert-manager; delete it to let certgen write it, or name it in tls.secret to serve it as it is")
		require.Equal(t, foreign, secretOf(t, client, tlsSecret))
	})

	t.Run("a foreign CA Secret should not be touched", func(t *testing.T) {
		t.Parallel()
		client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caSecret, Namespace: namespace}, Type: corev1.SecretTypeOpaque})
		_, err := generate(t, client, now)
		require.EqualError(t, err, "the Secret exists and was not made by certgen: Secret connected-registry/cr-connected-registry-tls-ca has no label app.kubernetes.io/managed-by=connected-registry-certgen; delete it, or give --ca-secret another name")
	})
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func writeCalls(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if w, ok := a.(k8stesting.CreateAction); ok && (a.GetVerb() == "create" || a.GetVerb() == "update") {
			out = append(out, a.GetVerb()+" "+w.GetObject().(metav1.Object).GetName())
		}
	}
	return out
}
