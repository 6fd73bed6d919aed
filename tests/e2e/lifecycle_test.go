package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestUpgradeAndOutage follows one site with the helm v3 CLI: an upgrade that replaces the registry pod keeps
// the certificate and the cache (no blob is fetched from the parent again), and with the parent down pulls go
// on, also from a registry pod restarted during the outage.
func TestUpgradeAndOutage(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns, release := "cr-e2e-lifecycle", "cr"
	helm := framework.HelmCLI{Bin: "helm3"}
	site, err := env.PrepareBYOCSite(ctx, ns, release, true)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
		}
	})
	out, err := helm.Helm(ctx, env, "install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile)
	require.NoError(t, err, out)
	// The node's containerd may hold the layers already: a client of the test's own pulls every blob.
	before := env.ParentBlobGets()
	size, err := env.PullImage(ctx)
	require.NoError(t, err)
	cold := env.ParentBlobGets() - before
	require.Positive(t, cold, "the first pull fetches the image's blobs from the parent")
	pulled, _, err := env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")
	tlsBefore, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)

	// An upgrade that changes the registry's configuration, so its pod is replaced.
	podsBefore := registryPods(t, ctx, ns)
	out, err = helm.Helm(ctx, env, "upgrade", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile,
		"--set", "registry.logLevel=debug")
	require.NoError(t, err, out)
	require.NotEqual(t, podsBefore, registryPods(t, ctx, ns), "the upgrade replaced the registry pod")
	tlsAfter, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "cr-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, tlsBefore.Data, tlsAfter.Data, "the upgrade keeps the CA and the certificate")
	before = env.ParentBlobGets()
	again, err := env.PullImage(ctx)
	require.NoError(t, err)
	require.Equal(t, size, again)
	require.Equal(t, 0, env.ParentBlobGets()-before, "after the upgrade no blob is fetched from the parent again")
	t.Logf("upgrade: the cold pull fetched %d blobs (%d bytes) from the parent, the same pull after the upgrade none", cold, size)

	// The site loses its uplink.
	env.StopParent()
	t.Cleanup(func() { require.NoError(t, env.StartParentAgain(context.Background())) })
	start := time.Now()
	_, err = env.PullImage(ctx)
	require.NoError(t, err, "every blob of the cached image is served with the parent down")
	pulled, took, err := env.PullThrough(ctx, ns)
	require.NoError(t, err, "a cached image pulls with the parent down")
	require.Contains(t, pulled, "hello from")
	t.Logf("outage: pull of the cached image by tag in %s", took.Round(100*time.Millisecond))

	// A registry pod restarted during the outage comes back and serves from its cache.
	for _, p := range registryPods(t, ctx, ns) {
		require.NoError(t, env.Client.CoreV1().Pods(ns).Delete(ctx, p, metav1.DeleteOptions{}))
	}
	require.Eventually(t, func() bool {
		d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, "cr-connected-registry", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 1 && d.Status.UpdatedReplicas == 1 && len(registryPods(t, ctx, ns)) == 1
	}, 2*time.Minute, 500*time.Millisecond, "the restarted registry pod becomes Ready without its parent")
	_, err = env.WaitServing(ctx)
	require.NoError(t, err)
	pulled, took, err = env.PullThrough(ctx, ns)
	require.NoError(t, err, "the restarted registry serves the cached image with the parent down")
	require.Contains(t, pulled, "hello from")
	t.Logf("outage: registry pod restarted and pulled from in %s (pull %s)", time.Since(start).Round(100*time.Millisecond), took.Round(100*time.Millisecond))

	out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait")
	require.NoError(t, err, out)
}

// TestOCIPackaging packages the chart, pushes it to the parent registry over TLS as an OCI artifact, and installs
// it from there with `helm install oci://...`, with each helm CLI.
func TestOCIPackaging(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, env.CA.CertPEM, 0o644))
	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) {
			ns, release := "cr-e2e-oci-"+bin, "cr"
			helm := framework.HelmCLI{Bin: bin}
			site, err := env.PrepareBYOCSite(ctx, ns, release, true)
			require.NoError(t, err)
			t.Cleanup(site.Cleanup)
			config := t.TempDir()
			auth := []string{"--registry-config", filepath.Join(config, "registry.json")}

			dest := t.TempDir()
			out, err := helm.Helm(ctx, env, "package", env.Chart, "--destination", dest)
			require.NoError(t, err, out)
			pkgs, err := filepath.Glob(filepath.Join(dest, "connected-registry-*.tgz"))
			require.NoError(t, err)
			require.Len(t, pkgs, 1)
			// The parent's push account: the sync token only pulls.
			out, err = helm.Helm(ctx, env, append([]string{"registry", "login", env.Parent.Host, "--username", env.Parent.Admin.Name,
				"--password", env.Parent.Admin.Password, "--ca-file", caFile}, auth...)...)
			require.NoError(t, err, out)
			repo := "oci://" + env.Parent.Host + "/charts/" + bin
			out, err = helm.Helm(ctx, env, append([]string{"push", pkgs[0], repo, "--ca-file", caFile}, auth...)...)
			require.NoError(t, err, out)
			require.Contains(t, out, "Digest: sha256:")

			start := time.Now()
			out, err = helm.Helm(ctx, env, append([]string{"install", release, repo + "/connected-registry", "--version", "0.1.0",
				"--ca-file", caFile, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile}, auth...)...)
			require.NoError(t, err, out)
			t.Logf("%s: installed from %s in %s", bin, repo, time.Since(start).Round(100*time.Millisecond))
			_, err = env.WaitServing(ctx)
			require.NoError(t, err)
			out, err = helm.Helm(ctx, env, "list", "-n", ns)
			require.NoError(t, err, out)
			require.True(t, strings.Contains(out, "connected-registry-0.1.0"), out)
			out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait")
			require.NoError(t, err, out)
		})
	}
}

func registryPods(t *testing.T, ctx context.Context, ns string) []string {
	t.Helper()
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=registry"})
	require.NoError(t, err)
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	return names
}
