package chart_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// podSpecOf returns the pod spec and pod metadata of a workload, nil for other kinds.
func podSpecOf(d chartrender.Document) (spec, meta map[string]any) {
	obj := d.Object
	path := map[string][]string{
		"Deployment": {"spec", "template"}, "DaemonSet": {"spec", "template"}, "Job": {"spec", "template"},
		"CronJob": {"spec", "jobTemplate", "spec", "template"}, "Pod": nil,
	}
	keys, ok := path[d.Kind()]
	if !ok {
		return nil, nil
	}
	cur := obj
	for _, k := range keys {
		cur, _ = cur[k].(map[string]any)
	}
	spec, _ = cur["spec"].(map[string]any)
	meta, _ = cur["metadata"].(map[string]any)
	return spec, meta
}

// TestConventionsReachEveryWorkload: imagePullSecrets, priorityClassName, podLabels, podAnnotations and extraEnv
// go into every pod and container the release runs, in every scenario and engine, hooks included; and
// fullnameOverride / nameOverride name every object.
func TestConventionsReachEveryWorkload(t *testing.T) {
	t.Parallel()
	conventions := map[string]any{
		"imagePullSecrets":  []any{map[string]any{"name": "site-pull"}},
		"priorityClassName": "site-critical",
		"podLabels":         map[string]any{"site.example.com/name": "berlin-1"},
		"podAnnotations":    map[string]any{"site.example.com/owner": "platform"},
		"extraEnv":          []any{map[string]any{"name": "SITE", "value": "berlin-1"}},
		"fullnameOverride":  "edge",
		"nameOverride":      "cr",
	}
	files, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for scenario, file := range files {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			opts := chartrender.Options{ValuesFiles: []string{file}, Values: conventions}
			apis, err := chartrender.ScenarioAPIVersions(file)
			require.NoError(t, err)
			opts.APIVersions = apis
			res, err := chartrender.Render(opts)
			require.NoError(t, err)
			workloads := 0
			for _, d := range res.Documents {
				if d.Object["metadata"].(map[string]any)["labels"].(map[string]any)["app.kubernetes.io/part-of"] != "connected-registry" {
					continue // cert-manager's own chart
				}
				require.True(t, d.Name() == "edge" || strings.HasPrefix(d.Name(), "edge-") || strings.Contains(d.Name(), "-edge-"),
					"%s %s is not named after fullnameOverride", d.Kind(), d.Name())
				require.Equal(t, "cr", d.Object["metadata"].(map[string]any)["labels"].(map[string]any)["app.kubernetes.io/name"], "%s %s", d.Kind(), d.Name())
				spec, meta := podSpecOf(d)
				if spec == nil {
					continue
				}
				workloads++
				id := d.Kind() + " " + d.Name()
				require.Equal(t, []any{map[string]any{"name": "site-pull"}}, spec["imagePullSecrets"], id)
				require.Equal(t, "site-critical", spec["priorityClassName"], id)
				require.Equal(t, "berlin-1", meta["labels"].(map[string]any)["site.example.com/name"], id)
				require.Equal(t, "platform", meta["annotations"].(map[string]any)["site.example.com/owner"], id)
				for _, key := range []string{"initContainers", "containers"} {
					cs, _ := spec[key].([]any)
					for _, c := range cs {
						c := c.(map[string]any)
						env, _ := c["env"].([]any)
						require.Contains(t, env, map[string]any{"name": "SITE", "value": "berlin-1"}, "%s container %s", id, c["name"])
					}
				}
				// The trust cleanup's per-node pods: the labels come as an argument, the rest from the Job's pod.
				if strings.HasSuffix(d.Name(), "-trust-cleanup") {
					require.Contains(t, d.YAML, "site.example.com/name=berlin-1,", id)
				}
			}
			require.Positive(t, workloads)
		})
	}
}
