package chart_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRenewalCronJobKeepsItsFailedJobs: a ttlSecondsAfterFinished on the renewal Jobs would delete a failed Job
// after it, so failedJobsHistoryLimit would never keep one for kubectl logs (kube-linter, polaris).
func TestRenewalCronJobKeepsItsFailedJobs(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false}}))
	require.NoError(t, err)
	d, ok := res.Find("CronJob", "cr-connected-registry-certgen-renew")
	require.True(t, ok)
	spec := d.Object["spec"].(map[string]any)
	require.Positive(t, spec["failedJobsHistoryLimit"])
	job := spec["jobTemplate"].(map[string]any)["spec"].(map[string]any)
	require.NotContains(t, job, "ttlSecondsAfterFinished", "a TTL deletes the failed Jobs failedJobsHistoryLimit should keep")
}

// TestReadmeNamesThePodSecurityLevelsRight: runAsUser: 0 is allowed by baseline; only the hostPath volumes need
// privileged.
func TestReadmeNamesThePodSecurityLevelsRight(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"README.md.gotmpl", "README.md"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "chart", "connected-registry", f))
		require.NoError(t, err)
		text := strings.Join(strings.Fields(string(b)), " ")
		require.NotContains(t, text, "`runAsUser: 0` need the Pod Security Standard `privileged`", f)
		require.Contains(t, text, "The hostPath volumes need the Pod Security Standard `privileged` level (`runAsUser: 0` alone is allowed by `baseline`", f)
	}
}
