package app_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

func TestPreflightChartArgs(t *testing.T) {
	t.Parallel()
	// The args of templates/preflight/job.yaml, as the byoc scenario renders them.
	args := []string{"connected-registry", "preflight", "--namespace=connected-registry", "--upgrade=false", "--service=cr-connected-registry",
		"--pvc=cr-connected-registry-data", "--input-secret=cr-connected-registry-preflight", "--cluster-ip=10.96.0.50",
		"--dns=" + strings.Join(serviceDNS, ","), "--tls-source=byoc", "--tls-secret=", "--key-algorithm=ECDSA", "--key-size=256",
		"--cert-manager-enabled=false", "--cert-manager-install=false", "--storage-class=", "--storage-request=500Gi",
		"--trust-distribution=true", "--use-node-selector=false", "--registry-node-selector=", "--log-level=info", "--timeout=90s",
		"--kubeconfig=/nonexistent/kubeconfig"}
	r := execute(t, nil, "", args...)
	require.ErrorContains(t, r.err, "configuring the API client: ")

	r = execute(t, nil, "", "connected-registry", "preflight", "--namespace=x", "--service=s", "--cluster-ip=10.96.0.50", "--tls-source=secret")
	require.EqualError(t, r.err, "--tls-source=secret needs --tls-secret: tls.secret")
	require.Equal(t, 2, app.ExitCode(r.err))
}
