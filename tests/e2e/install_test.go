package e2e_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestInstallPullUninstall installs the chart with a certificate of our own (BYOC, flat keys as the Azure
// extension's protected settings give them), with each installer in turn: the registry becomes Ready serving
// TLS, the node's containerd pulls an image through it from the parent and runs it, and helm uninstall leaves
// nothing behind. Trust is provided the way a cluster-provided trust would (trustDistribution.enabled=false).
func TestInstallPullUninstall(t *testing.T) {
	requireEnv(t)
	for _, inst := range framework.Installers() {
		t.Run(inst.Name(), func(t *testing.T) {
			installPullUninstall(t, context.Background(), inst)
		})
	}
}

func installPullUninstall(t *testing.T, ctx context.Context, inst framework.Installer) {
	ns := "cr-e2e-" + inst.Name()
	site, err := env.PrepareBYOCSite(ctx, ns, "cr", true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
		}
	})

	// helm test pulls the parent's image as a node would.
	testValues := filepath.Join(t.TempDir(), "test.yaml")
	require.NoError(t, os.WriteFile(testValues, []byte("test:\n  image: "+framework.HelloImage+"\n"), 0o600))
	start := time.Now()
	require.NoError(t, inst.Install(ctx, env, site.Release, ns, []string{site.ValuesFile, testValues}))
	t.Logf("%s: installed and Ready in %s", inst.Name(), time.Since(start).Round(100*time.Millisecond))

	// The registry serves TLS with our certificate at the ClusterIP, to a client that trusts only the CA.
	resp, err := env.WaitServing(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, framework.ClusterIP, resp.TLS.PeerCertificates[0].Subject.CommonName)
	plain, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + framework.RegistryHost + "/v2/")
	if err == nil {
		plain.Body.Close()
		require.Equal(t, http.StatusBadRequest, plain.StatusCode, "plain HTTP must not be served on 443")
	}
	_, err = tls.Dial("tcp", framework.RegistryHost, &tls.Config{MinVersion: tls.VersionTLS12})
	require.Error(t, err, "a client that does not trust the CA must fail the handshake")

	// The node's containerd pulls through the connected registry, from the parent, and the pod runs.
	out, took, err := env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, out, "hello from")
	t.Logf("%s: pod pulled through the connected registry and completed in %s", inst.Name(), took.Round(100*time.Millisecond))
	if inst.Name() != "sdk" {
		// A succeeded test pod is deleted at once (hook-succeeded), so there is no log to ask for with --logs.
		out, err := framework.HelmCLI{Bin: inst.Name()}.Helm(ctx, env, "test", site.Release, "--namespace", ns, "--timeout", "3m")
		require.NoError(t, err, out)
		require.Regexp(t, `TEST SUITE:\s+cr-connected-registry-pull-check[\s\S]*Phase:\s+Succeeded`, out)
	}
	cached := filepath.Join(env.VolumeDir(ns+"-data"), "docker", "registry", "v2", "repositories", strings.Split(framework.HelloImage, ":")[0])
	require.DirExists(t, cached, "the connected registry's cache holds the image it served")

	// The user's own Secret stays theirs; everything the chart made is gone after uninstall.
	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
	require.NoError(t, inst.Uninstall(ctx, env, site.Release, ns))
	left, err := env.Leftovers(ctx, ns)
	require.NoError(t, err)
	require.Empty(t, left, "helm uninstall left objects behind")
}
