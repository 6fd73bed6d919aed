package app_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/cmd/connected-registry/app"
)

var serviceDNS = []string{"cr-connected-registry", "cr-connected-registry.connected-registry", "cr-connected-registry.connected-registry.svc", "cr-connected-registry.connected-registry.svc.cluster.local"}

func TestCertgenChartArgs(t *testing.T) {
	t.Parallel()
	// The args of templates/certgen/job.yaml, as the generated scenario renders them.
	args := []string{"connected-registry", "certgen", "--namespace=connected-registry", "--secret=cr-connected-registry-tls", "--ca-secret=cr-connected-registry-tls-ca",
		"--ip=10.96.0.50", "--dns=" + strings.Join(serviceDNS, ","), "--key-algorithm=ECDSA", "--key-size=256", "--duration=2160h", "--log-level=info",
		"--kubeconfig=/nonexistent/kubeconfig"}
	r := execute(t, nil, "", args...)
	// The flags parse and validate; only the API client cannot be built from a kubeconfig that does not exist.
	require.ErrorContains(t, r.err, "configuring the API client: ")
	require.ErrorContains(t, r.err, "/nonexistent/kubeconfig")

	r = execute(t, nil, "", "connected-registry", "certgen", "--namespace=x", "--secret=s", "--ip=10.96.0.50", "--key-algorithm=ECDSA", "--key-size=2048")
	require.EqualError(t, r.err, "--key-algorithm ECDSA --key-size 2048: unsupported key algorithm or size: ECDSA keys are 256 (P-256) or 384 (P-384) bits, not 2048")
	require.Equal(t, 2, app.ExitCode(r.err))

	r = execute(t, nil, "", "connected-registry", "certgen", "--namespace=x", "--secret=s", "--ip=10.96.0.500")
	require.EqualError(t, r.err, `--ip "10.96.0.500" is not an IP address`)
}
