package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// TestQuick is the quick variant of the benchmark that make unit runs: on the chart with the site overlay, and
// on a synthetic input of 150 objects, the post-renderer's output is byte for byte that of bare krusty and of
// the kustomize CLI. `make bench-postrender` runs the full benchmark.
func TestQuick(t *testing.T) {
	t.Parallel()
	o := Options{Runs: 1}
	if bin := filepath.Join(chartrender.RepoRoot(), "bin", "kustomize"); fileExists(bin) {
		o.Kustomize = bin
	} else {
		t.Logf("%s is missing (bash ci/tools.sh builds it): comparing with bare krusty only", bin)
	}
	chart, err := ChartInput()
	require.NoError(t, err)
	for _, in := range []Input{chart, Synthetic(150)} {
		row, err := o.Measure(in)
		require.NoError(t, err)
		require.True(t, row.Identical, "%s: the post-renderer's output differs from kustomize's", in.Name)
		t.Logf("%s: ours %v, bare krusty %v, kustomize CLI %v", in.Name, row.Ours, row.Krusty, row.CLI)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
