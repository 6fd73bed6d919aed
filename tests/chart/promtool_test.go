package chart_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// promtoolBinary returns bin/promtool, which ci/tools.sh builds from the Prometheus Go module.
func promtoolBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(chartrender.RepoRoot(), "bin", "promtool")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run ci/tools.sh promtool (%v)", bin, err)
	}
	return bin
}

// TestAlertRulesWithPromtool renders the PrometheusRule with the default thresholds, and runs promtool check rules
// and promtool test rules (testdata/promtool/alerts_test.yaml) on its rules.
func TestAlertRulesWithPromtool(t *testing.T) {
	t.Parallel()
	promtool := promtoolBinary(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yaml"), renderedRules(t, metricsOn(map[string]any{"metrics.prometheusRule.enabled": true})), 0o644))
	tests, err := os.ReadFile(filepath.Join("testdata", "promtool", "alerts_test.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644))

	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %v:\n%s", args, out)
	}
}
