package app_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

// writeKubeconfig writes a kubeconfig a client can be built from; nothing listens at its server.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	return path
}

func TestTrustAgentCommandLine(t *testing.T) {
	t.Parallel()
	kubeconfig := writeKubeconfig(t)
	base := []string{"connected-registry", "trust-agent", "--host=10.96.0.50:443", "--owner=connected-registry/cr", "--health-addr="}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{
			name:    "both --ca-configmap and --ca-file should be a usage error",
			args:    []string{"--namespace=connected-registry", "--ca-configmap=" + bundleConfigMap, "--ca-file=/etc/connected-registry/ca/ca.crt"},
			wantErr: "give exactly one of --ca-configmap and --ca-file",
		},
		{
			name:    "neither --ca-configmap nor --ca-file should be a usage error",
			args:    []string{"--namespace=connected-registry"},
			wantErr: "give exactly one of --ca-configmap and --ca-file",
		},
		{
			name:    "--ca-file from the environment and --ca-configmap as a flag should be a usage error",
			args:    []string{"--namespace=connected-registry", "--ca-configmap=" + bundleConfigMap},
			env:     map[string]string{"CONNECTED_REGISTRY_TRUST_CA_FILE": "/etc/connected-registry/ca/ca.crt"},
			wantErr: "give exactly one of --ca-configmap and --ca-file",
		},
		{
			name:    "--ca-configmap without --namespace should be a usage error",
			args:    []string{"--ca-configmap=" + bundleConfigMap},
			wantErr: "--ca-configmap needs --namespace",
		},
		{
			name:    "a missing --host should be a usage error",
			args:    []string{"--host=", "--namespace=connected-registry", "--ca-configmap=" + bundleConfigMap},
			wantErr: "--host is required: the registry's clusterIP:443",
		},
		{
			name:    "--namespace without a pod name should be a usage error",
			args:    []string{"--namespace=connected-registry", "--ca-file=/etc/connected-registry/ca/ca.crt", "--kubeconfig=" + kubeconfig},
			wantErr: "--pod-name (POD_NAME) is required with --namespace: the agent's Events are about its pod",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, tc.env, "", append(append([]string{}, base...), tc.args...)...)
			require.EqualError(t, r.err, tc.wantErr)
			require.Equal(t, 2, app.ExitCode(r.err))
		})
	}
}
