package chart_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
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

// TestUninstallDeletesWhatFailedHooksLeft: with every TLS source, the post-delete cleanup deletes the preflight's
// input Secret (it holds tls.key and the connection string), the preflight Job a failed install keeps for kubectl
// logs, and its RBAC; the input Secret is also a hook deleted when the hooks fail.
func TestUninstallDeletesWhatFailedHooksLeft(t *testing.T) {
	t.Parallel()
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for name, file := range scenarios {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{file}, APIVersions: []string{chartrender.CertManagerAPIVersion}})
			require.NoError(t, err)
			job, ok := res.Find("Job", "cr-connected-registry-cleanup")
			require.True(t, ok, "every release has the post-delete cleanup")
			require.Contains(t, job.YAML, "helm.sh/hook: post-delete")
			for _, o := range []string{"Job", "ServiceAccount", "Role", "RoleBinding"} {
				require.Contains(t, job.YAML, o+"/cr-connected-registry-preflight,")
			}
			require.Contains(t, job.YAML, "ClusterRoleBinding/connected-registry-cr-connected-registry-preflight")
			if s, ok := res.Find("Secret", "cr-connected-registry-preflight"); ok {
				require.Contains(t, job.YAML, "cr-connected-registry-preflight", "the input Secret is deleted on uninstall")
				require.Regexp(t, `--secret=[^\n]*cr-connected-registry-preflight`, job.YAML)
				require.Contains(t, s.YAML, "helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded,hook-failed")
			}
		})
	}
}
