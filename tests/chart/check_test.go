package chart_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNotesPointToCheck: the NOTES name the command that checks the whole release, with the release's name and
// namespace, and say that it shows the preflight's warnings too.
func TestNotesPointToCheck(t *testing.T) {
	t.Parallel()
	res, err := render(t, base())
	require.NoError(t, err)
	require.Contains(t, res.Notes, "  kubectl connected-registry check -n connected-registry --release cr\n")
	require.Contains(t, res.Notes, "are Events on the registry's Service for an hour, which check shows too:")
}
