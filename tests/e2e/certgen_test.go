package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestGeneratedCertificates installs with no TLS value and cert-manager off, with the helm v4 CLI: the certgen
// hook makes a CA and a serving certificate, the node agent makes the node trust the CA, the node pulls through
// the registry, an upgrade keeps both certificates, and uninstall deletes the generated Secrets and the node's
// entry.
func TestGeneratedCertificates(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns, release := "cr-e2e-generated", "cr"
	helm := framework.HelmCLI{Bin: "helm4"}
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
	t.Logf("helm4 install with generated certificates: Ready in %s", time.Since(start).Round(100*time.Millisecond))

	secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "connected-registry-certgen", secret.Labels["app.kubernetes.io/managed-by"])
	caPEM := secret.Data["ca.crt"]
	_, err = env.WaitNodeCA(ctx, caPEM, time.Minute)
	require.NoError(t, err)

	// A real handshake with only the generated CA as root, for the ClusterIP.
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", framework.RegistryHost, &tls.Config{RootCAs: pool, ServerName: framework.ClusterIP})
	require.NoError(t, err)
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	require.Equal(t, "ECDSA", leaf.PublicKeyAlgorithm.String())
	require.Contains(t, leaf.DNSNames, "cr-connected-registry.cr-e2e-generated.svc")

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
