package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestPostRenderer installs through the kustomize post-renderer with a site overlay: with helm v3 as the
// --post-renderer binary, with helm v4 as the postrenderer/v1 plugin installed with `helm plugin install`. The
// overlay labels every object, sizes the registry and adds tolerations through the project's components, and the
// post-renderer turns trust distribution off (the node trusts the CA the way a cluster-provided trust would). The
// registry serves, the node pulls through it, and uninstall leaves nothing.
func TestPostRenderer(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	binary := filepath.Join(env.Root, "bin", "connected-registry-postrender")
	require.FileExists(t, binary, "make postrender builds it")
	for _, bin := range []string{"helm3", "helm4"} {
		t.Run(bin, func(t *testing.T) {
			ns, release := "cr-e2e-postrender-"+bin, "cr"
			site, err := env.PrepareBYOCSite(ctx, ns, release, true)
			require.NoError(t, err)
			t.Cleanup(site.Cleanup)

			// The overlay lives in the repository so it can name the components by relative path.
			overlay := filepath.Join(env.Root, "_out", "e2e", "overlay-"+bin)
			require.NoError(t, os.MkdirAll(overlay, 0o755))
			t.Cleanup(func() { _ = os.RemoveAll(overlay) })
			require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - helm-output.yaml
labels:
  - pairs:
      site.example.com/name: e2e
components:
  - ../../../kustomize/components/tolerations
  - ../../../kustomize/components/resources
`), 0o644))

			home := t.TempDir()
			for _, k := range []string{"HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"} {
				t.Setenv(k, home)
			}
			helm := framework.HelmCLI{Bin: bin}
			args := []string{"--post-renderer-args", "--kustomize-dir=" + overlay, "--post-renderer-args", "--trust-distribution=off"}
			if bin == "helm4" {
				out, err := helm.Helm(ctx, env, "plugin", "install", filepath.Join(env.Root, "postrender", "plugin", "connected-registry-postrender"))
				require.NoError(t, err, out)
				args = append([]string{"--post-renderer", "connected-registry-postrender"}, args...)
			} else {
				args = append([]string{"--post-renderer", binary}, args...)
			}
			t.Cleanup(func() {
				if t.Failed() {
					env.Dump(context.Background(), ns)
					_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
				}
			})
			start := time.Now()
			out, err := helm.Helm(ctx, env, append([]string{"install", release, env.Chart, "-n", ns, "--wait", "--timeout", "3m", "-f", site.ValuesFile}, args...)...)
			require.NoError(t, err, out)
			t.Logf("%s: installed through the post-renderer and Ready in %s", bin, time.Since(start).Round(100*time.Millisecond))

			d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, "cr-connected-registry", metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, "e2e", d.Labels["site.example.com/name"], "the overlay's label")
			require.NotEmpty(t, d.Spec.Template.Spec.Tolerations, "the tolerations component")
			_, err = env.Client.AppsV1().DaemonSets(ns).Get(ctx, "cr-connected-registry-trust-agent", metav1.GetOptions{})
			require.True(t, apierrors.IsNotFound(err), "--trust-distribution=off removes the node agent: %v", err)

			_, err = env.WaitServing(ctx)
			require.NoError(t, err)
			pulled, _, err := env.PullThrough(ctx, ns)
			require.NoError(t, err)
			require.Contains(t, pulled, "hello from")

			out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait")
			require.NoError(t, err, out)
			require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{}))
			left, err := env.Leftovers(ctx, ns)
			require.NoError(t, err)
			require.Empty(t, left, "helm uninstall left objects behind")
		})
	}
}
