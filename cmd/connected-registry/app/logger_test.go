package app

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLogger(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	log, err := newLogger(&out, "warn")
	require.NoError(t, err)
	log.Info("not at warn")
	log.Warn("a package that says error", "error", errors.New("boom"))
	log.Warn("a package that says err", "err", errors.New("bang"))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, "info is below warn")
	require.Contains(t, lines[0], `msg="a package that says error" err=boom`, "every error is under err")
	require.Contains(t, lines[1], `msg="a package that says err" err=bang`)
}
