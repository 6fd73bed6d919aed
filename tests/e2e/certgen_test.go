package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestGeneratedCertificates installs with no TLS value and cert-manager off, with the helm v3 and v4 CLIs: the certgen
// hook makes a CA and a serving certificate, the node agent makes the node trust the CA, the node pulls through
// the registry, an upgrade keeps both certificates, and uninstall deletes the generated Secrets and the node's
// entry.
func TestGeneratedCertificates(t *testing.T) {
	requireEnv(t)
	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) { generatedCertificates(t, bin) })
	}
}

func generatedCertificates(t *testing.T, bin string) {
	ctx := context.Background()
	ns, release := "cr-e2e-generated-"+bin, "cr"
	helm := framework.HelmCLI{Bin: bin}
	site, err := env.PrepareGeneratedSite(ctx, ns, release)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
		}
	})

	start := time.Now()
	out, err := helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
	require.NoError(t, err, out)
	t.Logf("%s install with generated certificates: Ready in %s", bin, time.Since(start).Round(100*time.Millisecond))

	secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "connected-registry-certgen", secret.Labels["app.kubernetes.io/managed-by"])
	caPEM := secret.Data["ca.crt"]
	_, err = env.WaitNodeCA(ctx, caPEM, time.Minute)
	require.NoError(t, err)

	// A real handshake with only the generated CA as root, for the ClusterIP.
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	// kube-proxy programs the new Service's address within seconds of helm returning.
	var conn *tls.Conn
	require.Eventually(t, func() bool {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", framework.RegistryHost, &tls.Config{RootCAs: pool, ServerName: framework.ClusterIP})
		return err == nil
	}, time.Minute, 300*time.Millisecond, "the registry serves a certificate that verifies against the generated CA: %v", err)
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	require.Equal(t, "ECDSA", leaf.PublicKeyAlgorithm.String())
	require.Contains(t, leaf.DNSNames, "cr-connected-registry."+ns+".svc")

	pulled, took, err := env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")
	t.Logf("pull through the registry with the generated CA: %s", took.Round(100*time.Millisecond))

	// An upgrade keeps the CA and the serving certificate, which are still right.
	out, err = helm.Helm(ctx, env, "upgrade", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
	require.NoError(t, err, out)
	after, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, secret.Data, after.Data, "upgrade must keep the generated CA and certificate")

	// Renewal without an upgrade: a serving certificate in its renewal window (issued 70 of its 90 days ago by
	// the same CA) is renewed by the renewal CronJob's certgen and served by the registry, with no restart by hand.
	caSecret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls-ca", metav1.GetOptions{})
	require.NoError(t, err)
	ca, err := certs.ParsePair(caSecret.Data["tls.crt"], caSecret.Data["tls.key"])
	require.NoError(t, err)
	spec, err := certs.ParseKeySpec("ECDSA", 256)
	require.NoError(t, err)
	old, err := certs.Issue(rand.Reader, ca, certs.Request{Key: spec, IPs: []netip.Addr{netip.MustParseAddr(framework.ClusterIP)},
		DNSNames: leaf.DNSNames, Duration: 90 * 24 * time.Hour}, time.Now().Add(-70*24*time.Hour))
	require.NoError(t, err)
	aging := after.DeepCopy()
	aging.Data["tls.crt"], aging.Data["tls.key"] = old.CertPEM, old.KeyPEM
	_, err = env.Client.CoreV1().Secrets(ns).Update(ctx, aging, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return framework.Serves(old.Cert.SerialNumber) }, time.Minute, 200*time.Millisecond,
		"the registry serves the aging certificate")

	cron, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, "cr-connected-registry-certgen-renew", metav1.GetOptions{})
	require.NoError(t, err)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "certgen-renew-now", Namespace: ns, Labels: cron.Spec.JobTemplate.Labels},
		Spec: cron.Spec.JobTemplate.Spec}
	start = time.Now()
	_, err = env.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err)
	var renewed *x509.Certificate
	require.Eventually(t, func() bool {
		s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
		if err != nil {
			return false
		}
		block, _ := pem.Decode(s.Data["tls.crt"])
		if block == nil {
			return false
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || c.SerialNumber.Cmp(old.Cert.SerialNumber) == 0 {
			return false
		}
		renewed = c
		return true
	}, 2*time.Minute, 500*time.Millisecond, "the renewal CronJob's certgen renews the aging certificate")
	require.True(t, time.Until(renewed.NotAfter) > 89*24*time.Hour, "a fresh 90-day certificate")
	require.Equal(t, caSecret.Data["tls.crt"], secretCA(t, ctx, ns), "renewal keeps the CA")
	require.Eventually(t, func() bool { return framework.Serves(renewed.SerialNumber) }, time.Minute, 200*time.Millisecond,
		"the registry serves the renewed certificate")
	t.Logf("MEASURE renewal without an upgrade: certgen Job created until the renewed certificate is served: %s", time.Since(start).Round(100*time.Millisecond))
	propagation := metav1.DeletePropagationBackground
	require.NoError(t, env.Client.BatchV1().Jobs(ns).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &propagation}))
	pulled, _, err = env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")

	out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
	require.NoError(t, err, out)
	for _, name := range []string{"cr-connected-registry-tls", "cr-connected-registry-tls-ca"} {
		_, err := env.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "secret %s must be deleted on uninstall: %v", name, err)
	}
	require.NoDirExists(t, framework.NodeEntry)
	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
	left, err := env.Leftovers(ctx, ns)
	require.NoError(t, err)
	require.Empty(t, left, "helm uninstall left objects behind")
	clusterLeft, err := env.ClusterLeftovers(ctx, release)
	require.NoError(t, err)
	require.Empty(t, clusterLeft)
}

// secretCA returns ca.crt of the registry's generated TLS Secret.
func secretCA(t *testing.T, ctx context.Context, ns string) []byte {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	return s.Data["ca.crt"]
}
