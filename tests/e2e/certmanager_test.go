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

// TestCertManager installs with certificates from the cluster's cert-manager (cert-manager.enabled=true,
// install=false), with the helm v3 and v4 CLIs. cert-manager's controller cannot be obtained offline: its real
// CRDs are installed from the cert-manager v1.21.2 module, so the real API server validates our Issuers and
// Certificates, and a clearly named test-only stand-in (framework.CertManagerStandIn) issues them. The registry
// serves the issued certificate, the node agent makes the node trust its CA, the node pulls, and uninstall leaves
// nothing. With the CRDs present, cert-manager.install=true is refused by the preflight clash check.
func TestCertManager(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	removeCRDs, err := env.InstallCertManagerCRDs(ctx)
	require.NoError(t, err)
	t.Cleanup(removeCRDs)

	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) {
			ns, release := "cr-e2e-cm-"+bin, "cr"
			helm := framework.HelmCLI{Bin: bin}
			site, err := env.PrepareCertManagerSite(ctx, ns, release)
			require.NoError(t, err)
			t.Cleanup(site.Cleanup)
			t.Cleanup(func() {
				if t.Failed() {
					env.Dump(context.Background(), ns)
					_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
				}
			})

			// The clash: cert-manager's API is served, and install=true would install it again.
			start := time.Now()
			out, err := helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "2m",
				"-f", site.ValuesFile, "--set", "cert-manager.install=true")
			require.Error(t, err, out)
			t.Logf("%s: install=true with cert-manager present failed after %s", bin, time.Since(start).Round(100*time.Millisecond))
			require.Less(t, time.Since(start), 30*time.Second)
			require.Contains(t, out, "cert-manager is already installed (the API cert-manager.io/v1 is served), and cert-manager.install=true would "+
				"install it a second time: set cert-manager.install=false to use the one in the cluster (its CRD certificates.cert-manager.io belongs to no Helm release)",
				"the render names the clash and the fix, before Helm's own ownership error")
			pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			require.Empty(t, pods.Items, "nothing was created")
			standIn, err := env.StartCertManagerStandIn(ctx, ns)
			require.NoError(t, err)
			defer standIn.Stop()
			start = time.Now()
			out, err = helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
			require.NoError(t, err, out)
			t.Logf("%s: installed with cert-manager's certificates and Ready in %s", bin, time.Since(start).Round(100*time.Millisecond))

			secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, "cr-connected-registry-tls", secret.Annotations["cert-manager.io/certificate-name"])
			pool := x509.NewCertPool()
			require.True(t, pool.AppendCertsFromPEM(secret.Data["ca.crt"]))
			require.Eventually(t, func() bool {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", framework.RegistryHost, &tls.Config{RootCAs: pool, ServerName: framework.ClusterIP})
				if err == nil {
					conn.Close()
				}
				return err == nil
			}, time.Minute, 500*time.Millisecond, "the registry serves the certificate cert-manager's stand-in issued, for the ClusterIP")
			_, err = env.WaitNodeCA(ctx, secret.Data["ca.crt"], time.Minute)
			require.NoError(t, err)
			pulled, took, err := env.PullThrough(ctx, ns)
			require.NoError(t, err)
			require.Contains(t, pulled, "hello from")
			t.Logf("%s: pull through the registry with cert-manager's CA: %s", bin, took.Round(100*time.Millisecond))

			out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
			require.NoError(t, err, out)
			issued := standIn.Stop()
			require.Equal(t, map[string]int{"cr-connected-registry-ca": 1, "cr-connected-registry-tls": 1}, issued)
			for _, name := range []string{"cr-connected-registry-tls", "cr-connected-registry-ca"} {
				_, err := env.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
				require.True(t, apierrors.IsNotFound(err), "cert-manager's Secret %s must be deleted on uninstall: %v", name, err)
			}
			require.NoDirExists(t, framework.NodeEntry)
			require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
			left, err := env.Leftovers(ctx, ns)
			require.NoError(t, err)
			require.Empty(t, left, "helm uninstall left objects behind")
		})
	}
}
