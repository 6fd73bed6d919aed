package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

const cleanupImage = "ghcr.io/connected-registry/connected-registry:1.0.0"

func TestCleanupCommandLine(t *testing.T) {
	t.Parallel()
	base := []string{"connected-registry", "cleanup", "--namespace=connected-registry", "--kubeconfig=/nonexistent/kubeconfig"}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantErr  string
		wantCode int
	}{
		{
			name:     "--nodes without --image or --pod-name should be a usage error",
			args:     []string{"--host=10.96.0.50:443", "--owner=connected-registry/cr"},
			wantErr:  "give --image or --pod-name (POD_NAME) with --nodes: the per-node pods run this binary's image",
			wantCode: 2,
		},
		{
			name:     "--nodes without --owner should be a usage error",
			args:     []string{"--host=10.96.0.50:443", "--image=" + cleanupImage},
			wantErr:  `--owner "" is not namespace/release`,
			wantCode: 2,
		},
		{
			name:     "--pod-name instead of --image should get as far as building the API client",
			args:     []string{"--host=10.96.0.50:443", "--owner=connected-registry/cr"},
			env:      map[string]string{"POD_NAME": "cr-connected-registry-trust-cleanup-x7k2p"},
			wantErr:  "configuring the API client: stat /nonexistent/kubeconfig: no such file or directory",
			wantCode: 1,
		},
		{
			name:     "a label without = should be a usage error",
			args:     []string{"--nodes=false", "--labels=app.kubernetes.io/instance"},
			wantErr:  `--labels item "app.kubernetes.io/instance" is not key=value`,
			wantCode: 2,
		},
		{
			name:     "labels from the environment twin should be checked too",
			args:     []string{"--nodes=false"},
			env:      map[string]string{"CONNECTED_REGISTRY_CLEANUP_LABELS": "a=b,=c"},
			wantErr:  `--labels item "=c" is not key=value`,
			wantCode: 2,
		},
		{
			name:     "valid flags should get as far as building the API client",
			args:     []string{"--host=10.96.0.50:443", "--owner=connected-registry/cr", "--image=" + cleanupImage, "--labels=a=b", "--secret=x,y"},
			wantErr:  "configuring the API client: stat /nonexistent/kubeconfig: no such file or directory",
			wantCode: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, tc.env, "", append(append([]string{}, base...), tc.args...)...)
			require.EqualError(t, r.err, tc.wantErr)
			require.Equal(t, tc.wantCode, app.ExitCode(r.err))
		})
	}
}
