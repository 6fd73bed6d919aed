package postrender_test

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/postrender"
)

// objects parses a stream into its objects by kind/namespace/name, leaving out hooks when hooks is false.
func objects(t *testing.T, stream string, hooks bool) map[string]map[string]any {
	t.Helper()
	docs, err := chartrender.SplitYAML(strings.NewReader(stream))
	require.NoError(t, err)
	out := map[string]map[string]any{}
	for _, d := range docs {
		md, _ := d["metadata"].(map[string]any)
		ann, _ := md["annotations"].(map[string]any)
		if _, ok := ann["helm.sh/hook"]; ok && !hooks {
			continue
		}
		delete(ann, postrender.Helm4FilenameAnnotation) // Helm 4 takes it off again
		if len(ann) == 0 {
			delete(md, "annotations")
		}
		out[fmt.Sprintf("%s/%s/%s", d["kind"], md["namespace"], md["name"])] = d
	}
	return out
}

func render(t *testing.T, file string, trust bool) *chartrender.Result {
	t.Helper()
	apis, err := chartrender.ScenarioAPIVersions(file)
	require.NoError(t, err)
	res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{file}, APIVersions: apis,
		Values: map[string]any{"trustDistribution": map[string]any{"enabled": trust}}})
	require.NoError(t, err)
	return res
}

func postRender(t *testing.T, trust postrender.Trust, stream string) string {
	t.Helper()
	r, err := postrender.New(postrender.Options{Trust: trust, FS: filesys.MakeFsInMemory()})
	require.NoError(t, err)
	out, err := r.Run(bytes.NewBufferString(stream))
	require.NoError(t, err)
	return out.String()
}

func sameObjects(t *testing.T, what string, want, got map[string]map[string]any) {
	t.Helper()
	require.Equal(t, sortedKeys(want), sortedKeys(got), "%s: the objects", what)
	for k := range want {
		require.Equal(t, want[k], got[k], "%s: %s", what, k)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// helm4Stream is what Helm 4 post-renders: every document, hooks included, annotated with its file.
func helm4Stream(t *testing.T, res *chartrender.Result) string {
	t.Helper()
	var b strings.Builder
	for _, d := range res.Documents {
		md, _ := d.Object["metadata"].(map[string]any)
		ann, _ := md["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
			md["annotations"] = ann
		}
		ann[postrender.Helm4FilenameAnnotation] = d.Template
		y, err := yaml.Marshal(d.Object)
		require.NoError(t, err)
		fmt.Fprintf(&b, "---\n%s", y)
	}
	return b.String()
}

// helm3Stream is what Helm 3 post-renders: the chart's output without hooks.
func helm3Stream(res *chartrender.Result) string {
	var b strings.Builder
	for _, d := range res.Documents {
		if d.Hook == "" {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", d.Template, strings.TrimSpace(d.YAML))
		}
	}
	return b.String()
}

// TestTrustSwitchMatchesChart: in every scenario, --trust-distribution=off turns the chart rendered with trust
// distribution into the same objects as the chart rendered without it, hooks included, and
// --trust-distribution=on turns the chart rendered without it into the same objects as the chart rendered with
// it (Helm 3's stream has no hooks; Helm 4's has them, and gets the agent's post-delete cleanup too).
func TestTrustSwitchMatchesChart(t *testing.T) {
	t.Parallel()
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for name, file := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			on, off := render(t, file, true), render(t, file, false)
			// Both sides through kustomize, which writes some block scalars differently from Helm.
			sameObjects(t, "off", objects(t, postRender(t, postrender.TrustKeep, off.YAML()), true),
				objects(t, postRender(t, postrender.TrustOff, on.YAML()), true))
			sameObjects(t, "on", objects(t, postRender(t, postrender.TrustKeep, helm3Stream(on)), false),
				objects(t, postRender(t, postrender.TrustOn, helm3Stream(off)), false))
			sameObjects(t, "on, Helm 4", objects(t, postRender(t, postrender.TrustKeep, helm4Stream(t, on)), true),
				objects(t, postRender(t, postrender.TrustOn, helm4Stream(t, off)), true))
		})
	}
}
