package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

const bundleConfigMap = "cr-connected-registry-trust-bundle"

func TestTLSReloaderCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{
			name:    "a missing --bundle-configmap should be a usage error",
			args:    []string{"--secret=cr-connected-registry-tls"},
			wantErr: "--secret and --bundle-configmap are required",
		},
		{
			name:    "a zero interval should be a usage error",
			args:    []string{"--secret=cr-connected-registry-tls", "--bundle-configmap=" + bundleConfigMap, "--interval=0s"},
			wantErr: "--interval 0s must be positive",
		},
		{
			name: "a metrics endpoint off the pod's loopback should be a usage error: debug ports must stay in the pod",
			args: []string{"--secret=cr-connected-registry-tls", "--bundle-configmap=" + bundleConfigMap,
				"--proxy-metrics=registry=http://10.0.0.5:5101/metrics"},
			wantErr: `--proxy-metrics "registry=http://10.0.0.5:5101/metrics" is not name=http://<loopback address>/<path>`,
		},
		{
			name: "a metrics endpoint without a name should be a usage error",
			args: []string{"--secret=cr-connected-registry-tls", "--bundle-configmap=" + bundleConfigMap,
				"--proxy-metrics=http://127.0.0.1:5101/metrics"},
			wantErr: `--proxy-metrics "http://127.0.0.1:5101/metrics" is not name=http://<loopback address>/<path>`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := execute(t, nil, "", append([]string{"connected-registry", "tls-reloader"}, tc.args...)...)
			require.EqualError(t, r.err, tc.wantErr)
			require.Equal(t, 2, app.ExitCode(r.err))
		})
	}
}
