package chart_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	helmchart "helm.sh/helm/v3/pkg/chart"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/extbundle"
)

// fakeDigest is a made-up digest for an image reference: render tests never pull.
func fakeDigest(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// releaseImages are what the bundle is built from: the project's two images as ci/images build lists them (the
// registry image under both its names), the acr engine's and cert-manager's five.
var releaseImages = []string{
	"ghcr.io/connected-registry/connected-registry:0.1.0",
	"docker.io/library/registry:3",
	"ghcr.io/connected-registry/distribution:v3.1.2",
	"mcr.microsoft.com/acr/connected-registry:0.11.0",
	"quay.io/jetstack/cert-manager-controller:v1.21.2",
	"quay.io/jetstack/cert-manager-webhook:v1.21.2",
	"quay.io/jetstack/cert-manager-cainjector:v1.21.2",
	"quay.io/jetstack/cert-manager-acmesolver:v1.21.2",
	"quay.io/jetstack/cert-manager-startupapicheck:v1.21.2",
}

func imageList(t *testing.T, refs []string) string {
	t.Helper()
	var b strings.Builder
	for _, r := range refs {
		fmt.Fprintf(&b, "%s %s %s.tar\n", r, fakeDigest(r), filepath.Base(r))
	}
	f := filepath.Join(t.TempDir(), "images.txt")
	require.NoError(t, os.WriteFile(f, []byte(b.String()), 0o644))
	return f
}

var (
	bundleOnce sync.Once
	bundle     *extbundle.Staged
	bundleErr  error
)

// stagedBundle is the bundle as make extension-bundle stages it, from the release images above.
func stagedBundle(t *testing.T) *extbundle.Staged {
	t.Helper()
	list := imageList(t, releaseImages)
	bundleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cr-extension-")
		if err != nil {
			bundleErr = err
			return
		}
		digests, err := extbundle.ReadImageLists(list)
		if err != nil {
			bundleErr = err
			return
		}
		bundle, bundleErr = extbundle.Stage(extbundle.StageOptions{Out: dir, Images: digests, RegistryServer: "contosoregistry.azurecr.io"})
	})
	require.NoError(t, bundleErr)
	return bundle
}

// TestExtensionBundleOfflineCheck stages the bundle and runs every offline check of it: the manifest, no archive
// in the chart, helm lint --strict with both helm CLIs, the ARM template and the UI definition, every setting a
// key of the chart's schema, and every examples/ scenario given as the template's settings (its defaults plus the
// scenario's values, as --set settings) rendering exactly as the scenario's files, with every image by digest from
// global.azure.images.
func TestExtensionBundleOfflineCheck(t *testing.T) {
	t.Parallel()
	b := stagedBundle(t)
	require.Empty(t, b.Missing)
	probs := extbundle.Check(b.Dir, extbundle.CheckOptions{HelmBins: []string{helmBin(t, "helm3"), helmBin(t, "helm4")}})
	require.Empty(t, probs)
	for _, f := range []string{extbundle.ManifestFile, extbundle.MainTemplateFile, extbundle.UIDefinitionFile, "connected-registry/Chart.yaml", "connected-registry/charts/cert-manager/Chart.yaml"} {
		require.FileExists(t, filepath.Join(b.Dir, f))
	}
	m, err := extbundle.LoadManifest(filepath.Join(b.Dir, extbundle.ManifestFile))
	require.NoError(t, err)
	require.Equal(t, "contosoregistry.azurecr.io", m.RegistryServer)
	require.Equal(t, b.Images["registry"].Registry, "ghcr.io/connected-registry", "the registry image under the project's own name")
}

// TestExtensionDefaultsAreTheDefaultExample renders the template's defaults plus the default example's protected
// settings, as flat --set settings, and requires the render of examples/default.
func TestExtensionDefaultsAreTheDefaultExample(t *testing.T) {
	t.Parallel()
	tmpl, err := extbundle.LoadTemplate(filepath.Join(chartrender.RepoRoot(), "extension", extbundle.MainTemplateFile))
	require.NoError(t, err)
	vars, err := extbundle.ScenarioVars()
	require.NoError(t, err)
	settings, err := tmpl.Evaluate(map[string]string{"serviceClusterIP": vars["SERVICE_IP"], "connectionString": vars["CONNECTION_STRING"]})
	require.NoError(t, err)
	ext, err := chartrender.Render(chartrender.Options{Chart: loadStaged(t), Set: settings})
	require.NoError(t, err)
	sc, err := extbundle.Scenarios([]string{"default"})
	require.NoError(t, err)
	files, err := chartrender.Render(chartrender.Options{Chart: loadStaged(t), ValuesFiles: sc[0].Files})
	require.NoError(t, err)
	require.Equal(t, files.YAML(), ext.YAML())
	_, ok := ext.Find("Deployment", "cert-manager")
	require.True(t, ok, "the defaults install cert-manager, as the tutorial's do")
}

func loadStaged(t *testing.T) *helmchart.Chart {
	t.Helper()
	c, err := chartrender.LoadChart(stagedChart(t))
	require.NoError(t, err)
	return c
}

// TestExtensionExposesTheTutorialSettings: the template passes exactly the tutorial's settings, under their flat
// keys, the secret ones as protected settings from securestring parameters, and the manifest carries the chart's
// version.
func TestExtensionExposesTheTutorialSettings(t *testing.T) {
	t.Parallel()
	tmpl, err := extbundle.LoadTemplate(filepath.Join(chartrender.RepoRoot(), "extension", extbundle.MainTemplateFile))
	require.NoError(t, err)
	s, err := tmpl.Settings()
	require.NoError(t, err)
	keys := func(m map[string]string) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	require.Equal(t, []string{"cert-manager.enabled", "cert-manager.install", "pvc.storageClassName", "pvc.storageRequest",
		"service.clusterIP", "trustDistribution.enabled", "trustDistribution.useNodeSelector"}, keys(s.Public))
	require.Equal(t, []string{"connectionString", "tls.cacrt", "tls.crt", "tls.key", "tls.secret"}, keys(s.Protected))

	m, err := extbundle.LoadManifest(filepath.Join(chartrender.RepoRoot(), "extension", extbundle.ManifestFile))
	require.NoError(t, err)
	var chart struct{ Version string }
	data, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "Chart.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &chart))
	require.Equal(t, chart.Version, m.Version, "manifest.yaml's version follows the chart's")
}

// TestExtensionCheckCatches breaks a staged bundle in each way the packaging tool would refuse and requires the
// offline check to name it.
func TestExtensionCheckCatches(t *testing.T) {
	t.Parallel()
	b := stagedBundle(t)
	editJSON := func(t *testing.T, file string, edit func(m map[string]any)) {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(data, &m))
		edit(m)
		data, err = json.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(file, data, 0o644))
	}
	extension := func(m map[string]any) map[string]any {
		return m["resources"].([]any)[0].(map[string]any)["properties"].(map[string]any)
	}
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		want    string
	}{
		{"a packaged subchart should fail", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "connected-registry", "charts", "cert-manager-v1.21.2.tgz"), []byte("x"), 0o644))
		}, "cert-manager-v1.21.2.tgz"},
		{"a version not in #.#.# form should fail", func(t *testing.T, dir string) {
			f := filepath.Join(dir, extbundle.ManifestFile)
			data, _ := os.ReadFile(f)
			require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(data), "version: 0.1.0", "version: 0.1", 1)), 0o644))
		}, `version "0.1" is not in the #.#.# form`},
		{"a UI output that is no template parameter should fail", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, extbundle.UIDefinitionFile), func(m map[string]any) {
				m["parameters"].(map[string]any)["outputs"].(map[string]any)["storageSize"] = "[steps('registry').pvcStorageRequest]"
			})
		}, `output "storageSize" is not a parameter of the ARM template`},
		{"a template parameter no output gives should fail", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, extbundle.UIDefinitionFile), func(m map[string]any) {
				delete(m["parameters"].(map[string]any)["outputs"].(map[string]any), "serviceClusterIP")
			})
		}, `parameter "serviceClusterIP" has no default and no output gives it`},
		{"a setting the chart's schema does not know should fail", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, extbundle.MainTemplateFile), func(m map[string]any) {
				extension(m)["configurationSettings"].(map[string]any)["pvc.storageSize"] = "[parameters('pvcStorageRequest')]"
			})
		}, `setting "pvc.storageSize" is not a key of the chart's values.schema.json`},
		{"a protected setting from a plain string parameter should fail", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, extbundle.MainTemplateFile), func(m map[string]any) {
				m["parameters"].(map[string]any)["connectionString"].(map[string]any)["type"] = "string"
			})
		}, `protected setting "connectionString" comes from parameter "connectionString" of type string`},
		{"a resource type the Marketplace does not allow should fail", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, extbundle.MainTemplateFile), func(m map[string]any) {
				m["resources"] = append(m["resources"].([]any), map[string]any{"type": "Microsoft.Storage/storageAccounts"})
			})
		}, "resources[1] is a Microsoft.Storage/storageAccounts"},
		{"a default that renders differently from its example should fail", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, extbundle.MainTemplateFile), func(m map[string]any) {
				m["parameters"].(map[string]any)["pvcStorageRequest"].(map[string]any)["defaultValue"] = "100Gi"
			})
		}, "render differently from examples/default"},
		{"an image the subchart takes by tag should fail", func(t *testing.T, dir string) {
			f := filepath.Join(dir, "connected-registry", "charts", "cert-manager", "templates", "webhook-deployment.yaml")
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			patched := `(include "cert-manager.azureImage" (list $ "certManagerWebhook" .Values.webhook.image) | fromJson)`
			require.Contains(t, string(data), patched)
			require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(data), patched, ".Values.webhook.image", 1)), 0o644))
		}, "Deployment/cert-manager-webhook .spec.template.spec.containers[0].image is quay.io/jetstack/cert-manager-webhook:v1.21.2, not by digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "bundle")
			out, err := exec.Command("cp", "-a", b.Dir, dir).CombinedOutput()
			require.NoError(t, err, string(out))
			tc.breakIt(t, dir)
			probs := extbundle.Check(dir, extbundle.CheckOptions{Scenarios: []string{"default"}})
			var msgs []string
			for _, p := range probs {
				msgs = append(msgs, p.Error())
			}
			require.Contains(t, strings.Join(msgs, "\n"), tc.want)
		})
	}
}

// azureImagesValues are global.azure.images for every image, in one registry.
func azureImagesValues() (map[string]any, map[string]extbundle.AzureImage) {
	images := map[string]extbundle.AzureImage{}
	vals := map[string]any{}
	for _, k := range extbundle.ImageKeys {
		img := extbundle.AzureImage{Registry: "marketplace.azurecr.io/connected-registry", Image: k.Name, Digest: fakeDigest(k.Name)}
		images[k.Name] = img
		vals[k.Name] = map[string]any{"registry": img.Registry, "image": img.Image, "digest": img.Digest}
	}
	return map[string]any{"azure": map[string]any{"images": vals}}, images
}

// TestAzureImagesEveryImageByDigest renders every scenario, and the acr engine, with global.azure.images set, and
// requires every image reference, arguments included, to be one of them by digest.
func TestAzureImagesEveryImageByDigest(t *testing.T) {
	t.Parallel()
	global, images := azureImagesValues()
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	chart := loadStagedBundleChart(t)
	for name, file := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			apis, err := chartrender.ScenarioAPIVersions(file)
			require.NoError(t, err)
			res, err := chartrender.Render(chartrender.Options{Chart: chart, ValuesFiles: []string{file}, Values: map[string]any{"global": global}, APIVersions: apis})
			require.NoError(t, err)
			require.NoError(t, extbundle.CheckImages(res, images))
			refs := extbundle.ImageRefs(res)
			// The trust cleanup's per-node pods run the image of the cleanup Job's own pod: that image is the one checked.
			require.True(t, slices.ContainsFunc(refs, func(r extbundle.ImageRef) bool {
				return r.Object == "Job/cr-connected-registry-trust-cleanup" && strings.HasPrefix(r.Path, ".spec.template.spec.containers[0].image")
			}) || name == "own-trust", "the trust cleanup's image is checked")
		})
	}
}

// TestAzureImagesMissingEntry: with global.azure.images set, an image the release needs but lacks fails the
// render, naming the key.
func TestAzureImagesMissingEntry(t *testing.T) {
	t.Parallel()
	entry := func(name string) map[string]any {
		return map[string]any{"registry": "marketplace.azurecr.io", "image": name, "digest": fakeDigest(name)}
	}
	for _, tc := range []struct {
		name   string
		images map[string]any
		extra  map[string]any
		want   string
	}{
		{"the acr engine without its image should fail", map[string]any{"connectedRegistry": entry("a"), "registry": entry("b")},
			map[string]any{"registry": map[string]any{"engine": "acr"}, "cert-manager": map[string]any{"install": false}},
			"global.azure.images.acrConnectedRegistry lacks registry, image or digest"},
		{"the project's image missing should fail", map[string]any{"registry": entry("b")},
			map[string]any{"cert-manager": map[string]any{"install": false}},
			"global.azure.images.connectedRegistry lacks registry, image or digest"},
		{"cert-manager installed without its images should fail", map[string]any{"connectedRegistry": entry("a"), "registry": entry("b"), "certManagerWebhook": entry("c")},
			nil,
			"cert-manager.install=true with global.azure.images set runs cert-manager's images from it by digest, but global.azure.images.certManagerController, global.azure.images.certManagerCainjector, global.azure.images.certManagerAcmesolver, global.azure.images.certManagerStartupapicheck are missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vals := with(map[string]any{"global": map[string]any{"azure": map[string]any{"images": tc.images}}})
			for k, v := range tc.extra {
				vals[k] = v
			}
			_, err := render(t, vals, chartrender.CertManagerAPIVersion)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := render(t, with(map[string]any{"global": map[string]any{"azure": map[string]any{"images": map[string]any{"connectedRegistry": map[string]any{"registry": "r", "image": "i", "digest": "v1"}}}}}))
	require.ErrorContains(t, err, "/global/azure/images/connectedRegistry/digest': 'v1' does not match pattern", "the schema wants a digest, not a tag")
}

func loadStagedBundleChart(t *testing.T) *helmchart.Chart {
	t.Helper()
	c, err := chartrender.LoadChart(stagedBundle(t).Chart)
	require.NoError(t, err)
	return c
}
