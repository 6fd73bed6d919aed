package chart_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// TestValuesFoldedOncePerTemplate: cr.values (the flat-key fold and its JSON round trip) runs at most once at the
// top of each top-level template, and never in a helper, which takes the folded values from its caller.
func TestValuesFoldedOncePerTemplate(t *testing.T) {
	t.Parallel()
	const fold = `include "cr.values"`
	dir := filepath.Join(chartrender.ChartDir(), "templates")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		text := string(data)
		if strings.HasPrefix(d.Name(), "_") {
			// Only the doc comment of cr.values in _helpers.tpl shows the include, as an example.
			for _, line := range strings.Split(text, "\n") {
				require.False(t, strings.Contains(line, fold) && !strings.HasPrefix(line, "  "), "%s folds the values in a helper: %s", rel, line)
			}
			return nil
		}
		require.LessOrEqual(t, strings.Count(text, fold), 1, "%s folds the values more than once", rel)
		if i := strings.Index(text, fold); i >= 0 {
			require.NotContains(t, text[:i], "\n{{- if", "%s folds the values below its first condition, not at its top", rel)
		}
		return nil
	})
	require.NoError(t, err)
}
