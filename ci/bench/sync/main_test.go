package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestQuickBenchmark runs a small benchmark as a correctness check of the pre-sync and of the benchmark itself:
// the sync completes every tag, crane copies the same set, and the re-sync of the unchanged set fetches no blob
// and under 1 MB over the uplink. It asserts no timing.
func TestQuickBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three registries and the chart's registry pod")
	}
	var out, log bytes.Buffer
	err := run(context.Background(), []string{"--dir", t.TempDir(), "--out", "-", "--tags", "2", "--layers", "1",
		"--layer-size", "1000000", "--small-tags", "3"}, &out, &log)
	require.NoError(t, err, log.String())
	report := out.String()
	t.Log(report)
	require.Contains(t, report, "complete: 5 tags synced")
	require.Contains(t, report, "complete: 5 tags unchanged, 0 synced, 0 blobs fetched")
	require.Regexp(t, `re-sync: bytes over the uplink \| \d+ B \| < 1 MB \| met`, report)
}
