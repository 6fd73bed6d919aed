package app_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

// TestLogLevelIsCommon: every command takes --log-level (and its environment twin), and refuses a level it does
// not know before it does anything.
func TestLogLevelIsCommon(t *testing.T) {
	t.Parallel()
	commands := [][]string{
		{"connected-registry", "preflight"}, {"connected-registry", "certgen"}, {"connected-registry", "trust-agent"},
		{"connected-registry", "tls-reloader"}, {"connected-registry", "trust-remove"}, {"connected-registry", "cleanup"},
		{"connected-registry", "install-credential-helper"}, {"connected-registry", "parent-gate"},
		{"connected-registry", "credential-helper", "get"}, {"docker-credential-connected-registry", "get"},
	}
	for _, args := range commands {
		t.Run(strings.Join(args, " ")+" should refuse an unknown level from the flag and from the environment", func(t *testing.T) {
			t.Parallel()
			const want = `--log-level "loud" is not error, warn, info or debug`
			at := 2 // after the command, before an action
			if strings.HasPrefix(args[0], "docker-credential-") {
				at = 1
			}
			r := execute(t, nil, "", slices.Insert(slices.Clone(args), at, "--log-level=loud")...)
			require.EqualError(t, r.err, want)
			require.Equal(t, 2, app.ExitCode(r.err))
			r = execute(t, map[string]string{"CONNECTED_REGISTRY_LOG_LEVEL": "loud"}, "", args...)
			require.EqualError(t, r.err, want)
		})
	}
}
