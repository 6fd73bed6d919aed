package postrender_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/postrender"
)

// TestMatchesKustomizeCLI: for every example overlay and component, the post-renderer's output is byte for
// byte what the kustomize v5.8.2 CLI prints for the same overlay with the chart's output written to
// helm-output.yaml.
func TestMatchesKustomizeCLI(t *testing.T) {
	t.Parallel()
	kustomizeBin := filepath.Join(root, "bin", "kustomize")
	requireFile(t, kustomizeBin, "run `bash ci/tools.sh` to build the pinned kustomize CLI")
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{scenarios["generated"]}})
	require.NoError(t, err)
	chartOut := res.YAML()

	overlays := map[string]string{
		"site": "",
	}
	for _, c := range []string{"tolerations", "http-proxy", "resources", "image-mirror", "trust-distribution/off"} {
		overlays[c] = "resources: [helm-output.yaml]\ncomponents: [../kustomize/components/" + c + "]\n"
	}
	for name, kustomization := range overlays {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "site" {
				// the example is a kustomization, not a component: use it as the overlay itself
				tmp := t.TempDir()
				require.NoError(t, os.CopyFS(filepath.Join(tmp, "kustomize"), os.DirFS(filepath.Join(root, "kustomize"))))
				dir := filepath.Join(tmp, "kustomize", "examples", "site")
				compare(t, kustomizeBin, dir, chartOut)
				return
			}
			tmp := t.TempDir()
			require.NoError(t, os.CopyFS(filepath.Join(tmp, "kustomize"), os.DirFS(filepath.Join(root, "kustomize"))))
			dir := filepath.Join(tmp, "overlay")
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644))
			compare(t, kustomizeBin, dir, chartOut)
		})
	}
}

func compare(t *testing.T, kustomizeBin, dir, chartOut string) {
	t.Helper()
	r, err := postrender.New(postrender.Options{Dir: dir})
	require.NoError(t, err)
	got, err := r.Run(bytes.NewBufferString(chartOut))
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(filepath.Join(dir, postrender.ResourceName), []byte(chartOut), 0o644))
	var want, stderr bytes.Buffer
	cmd := exec.Command(kustomizeBin, "build", dir)
	cmd.Stdout, cmd.Stderr = &want, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	require.Equal(t, want.String(), got.String())
}
