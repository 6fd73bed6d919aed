package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
	"github.com/connected-registry/connected-registry/internal/testing/extbundle"
	"github.com/connected-registry/connected-registry/internal/testing/imagebuild"
	"github.com/connected-registry/connected-registry/tests/e2e/framework"
)

// TestExtensionBundle installs the chart once from the staged extension bundle, as the Arc extension manager
// would: the bundle's global.azure.images name the project's images on the test parent by digest (pushed there
// with ci/images push), the settings are mainTemplate.json's defaults with the scenario's values as --set
// settings (generated certificates: cert-manager's images cannot be had offline), and the site's values file adds
// what the test cluster needs. The node trusts the parent's CA (certs.d) and resolves the two images there by
// digest, without credentials (the parent lets anyone pull those two repositories, as ACR's anonymous pull does);
// every pod of the release runs them, and a pod pulls through the installed registry.
func TestExtensionBundle(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	caFile := filepath.Join(env.State, "ca.crt")
	require.NoError(t, env.Run(ctx, "go", "run", "./ci/images", "push", "--image-dir", "_out/images", "--only", "connected-registry,registry",
		"--registry", env.Parent.Host, "--ca", caFile, "--username", env.Parent.Admin.Name, "--password", env.Parent.Admin.Password))

	// The images list of the release, as make release will write it: the images under the parent's name.
	local, err := extbundle.ReadImageLists(filepath.Join(env.Root, "_out", "images", imagebuild.ImageListName))
	require.NoError(t, err)
	var list strings.Builder
	for ref, digest := range local {
		dst, err := imagebuild.DestinationRef(ref, env.Parent.Host, nil)
		require.NoError(t, err)
		fmt.Fprintf(&list, "%s %s\n", dst, digest)
	}
	listFile := filepath.Join(t.TempDir(), "images.txt")
	require.NoError(t, os.WriteFile(listFile, []byte(list.String()), 0o644))
	digests, err := extbundle.ReadImageLists(listFile)
	require.NoError(t, err)
	b, err := extbundle.Stage(extbundle.StageOptions{Out: filepath.Join(env.State, "extension"), Images: digests})
	require.NoError(t, err)
	product := []string{b.Images["connectedRegistry"].Ref(), b.Images["registry"].Ref()}
	for _, ref := range product {
		require.True(t, strings.HasPrefix(ref, env.Parent.Host+"/connected-registry/"), ref)
	}
	t.Logf("bundle staged in %s with %s", b.Dir, strings.Join(product, ", "))

	untrust, err := env.TrustOnNode(env.Parent.Host, env.CA.CertPEM)
	require.NoError(t, err)
	t.Cleanup(untrust)
	// The node must resolve the images at the parent, not find them under these names from an earlier run.
	require.NoError(t, env.ForgetNodeImages(ctx, product...))
	t.Cleanup(func() { _ = env.ForgetNodeImages(context.Background(), product...) })

	ns, release := "cr-e2e-extension", "connectedregistry"
	helm := framework.HelmCLI{Bin: "helm3"}
	site, err := env.PrepareExampleSite(ctx, ns, release)
	require.NoError(t, err)
	t.Cleanup(site.Cleanup)
	t.Cleanup(func() {
		if t.Failed() {
			env.Dump(context.Background(), ns)
			_, _ = helm.Helm(context.Background(), env, "uninstall", release, "-n", ns, "--wait")
		}
	})

	tmpl, err := extbundle.LoadTemplate(filepath.Join(b.Dir, extbundle.MainTemplateFile))
	require.NoError(t, err)
	settings, err := tmpl.Evaluate(map[string]string{
		"serviceClusterIP": framework.ClusterIP, "connectionString": env.ConnectionString(),
		"certManagerEnabled": "false", "certManagerInstall": "false",
		"pvcStorageClassName": framework.StorageClass, "pvcStorageRequest": "1Gi",
	})
	require.NoError(t, err)
	args := []string{"install", release, b.Chart, "-n", ns, "--wait", "--timeout", "4m", "-f", site.ValuesFile}
	for _, s := range settings {
		args = append(args, "--set", s)
	}
	mark := env.Parent.Log()
	start := time.Now()
	out, err := helm.Helm(ctx, env, args...)
	require.NoError(t, err, out)
	t.Logf("installed from the bundle and Ready in %s", time.Since(start).Round(100*time.Millisecond))

	// The node resolved both images at the parent by digest, over TLS, with a token granted without credentials.
	// Their layers may already be in containerd's content store (the framework imports the same images under
	// their own names), so containerd may fetch no bytes: what this proves is the reference, the trust and the
	// anonymous pull, not a download.
	seen := env.Parent.Log().Since(mark)
	for _, key := range []string{"connectedRegistry", "registry"} {
		img := b.Images[key]
		repo := strings.TrimPrefix(img.Registry, env.Parent.Host+"/") + "/" + img.Image
		require.True(t, slices.ContainsFunc(seen.Token, func(r acrparent.TokenRequest) bool {
			return r.Account == acrparent.AnonymousSubject && r.Status == http.StatusOK && slices.Contains(r.Granted, "repository:"+repo+":pull")
		}), "the node got an anonymous pull token for %s:\n%s", repo, seen)
		require.True(t, slices.ContainsFunc(seen.API, func(r acrparent.APIRequest) bool {
			return r.Path == "/v2/"+repo+"/manifests/"+img.Digest && r.Auth == "Bearer" && r.Status == http.StatusOK
		}), "the node resolved %s by digest at the parent:\n%s", img.Ref(), seen)
	}
	t.Logf("the node resolved both images at the parent by digest without credentials (%d blob bytes fetched)", seen.BlobBytes())

	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	ran := map[string]bool{}
	for _, p := range pods.Items {
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			require.Contains(t, product, c.Image, "pod %s container %s", p.Name, c.Name)
			ran[c.Image] = true
		}
	}
	require.Len(t, ran, 2, "the registry pod runs both images from the parent")

	secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, release+"-connected-registry-tls", metav1.GetOptions{})
	require.NoError(t, err)
	_, err = env.WaitNodeCA(ctx, secret.Data["ca.crt"], time.Minute)
	require.NoError(t, err)
	pulled, took, err := env.PullThrough(ctx, ns)
	require.NoError(t, err)
	require.Contains(t, pulled, "hello from")
	t.Logf("pulled through the registry installed from the bundle in %s", took.Round(100*time.Millisecond))

	out, err = helm.Helm(ctx, env, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
	require.NoError(t, err, out)
	require.NoDirExists(t, framework.NodeEntry)
	_ = env.Client.CoreV1().Secrets(ns).Delete(ctx, "parent-credentials", metav1.DeleteOptions{})
	left, err := env.Leftovers(ctx, ns)
	require.NoError(t, err)
	require.Empty(t, left, "helm uninstall left objects behind")
}
