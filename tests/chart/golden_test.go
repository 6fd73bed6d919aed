package chart_test

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestScenarioGolden renders every scenario values file under chart/connected-registry/ci through the Helm SDK
// and compares the output, NOTES included, with its golden file. Run with -update after an intended change.
func TestScenarioGolden(t *testing.T) {
	t.Parallel()
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	require.Subset(t, names, []string{"default", "cert-manager-preinstalled", "byoc", "secret", "own-trust", "generated", "acr", "http"})

	for _, name := range names {
		file := scenarios[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			apis, err := chartrender.ScenarioAPIVersions(file)
			require.NoError(t, err)
			res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{file}, APIVersions: apis})
			require.NoError(t, err)
			got := res.YAML() + "---\n# NOTES.txt\n" + res.Notes + "\n"
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test ./tests/chart -run TestScenarioGolden -update")
			require.Equal(t, string(want), got, "rendered %s differs from %s: run with -update if intended", name, golden)
		})
	}
}
