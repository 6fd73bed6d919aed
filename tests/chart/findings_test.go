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

// TestOversizedValuesFailAtRender: megabytes pasted by mistake fail at render, naming the value and the cap, not on
// Kubernetes' 1 MiB limit of the preflight's Secret ("data: Too long").
func TestOversizedValuesFailAtRender(t *testing.T) {
	t.Parallel()
	crt := scenarioValue(t, "byoc", "tls.crt")
	key := scenarioValue(t, "byoc", "tls.key")
	huge := strings.Repeat("QUFB", 300000)
	byoc := func(extra map[string]any) map[string]any {
		v := with(map[string]any{"cert-manager": map[string]any{"enabled": false, "install": false}, "tls.crt": crt, "tls.key": key})
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	for _, tc := range []struct {
		name, want string
		vals       map[string]any
	}{
		{"a tls.crt of megabytes should fail naming tls.crt and its cap", "tls.crt is 1200000 characters, more than the 90000 the chart accepts: give only the serving certificate and its intermediates, base64-encoded once", byoc(map[string]any{"tls.crt": huge})},
		{"a tls.key of megabytes should fail without echoing it", "tls.key is 1200000 characters, more than the 18000 the chart accepts: give only the serving certificate's private key, base64-encoded once", byoc(map[string]any{"tls.key": huge})},
		{"a tls.cacrt of megabytes should fail", "tls.cacrt is 1200000 characters, more than the 90000 the chart accepts", byoc(map[string]any{"tls.cacrt": huge})},
		{"a connection string of megabytes should fail", "connectionString is 1200000 characters, more than the 4096 the chart accepts", with(map[string]any{"connectionString": huge})},
		{"a parent CA bundle of megabytes should fail", "registry.parent.caBundle is 1200000 characters, more than the 262144 the chart accepts", with(map[string]any{"registry": map[string]any{"parent": map[string]any{"caBundle": huge}}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.vals)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "QUFBQUFB")
		})
	}
	_, err := render(t, byoc(nil))
	require.NoError(t, err, "a real certificate and key are far below the caps")
}

// TestPreflightWarningsReachTheUser: Helm deletes a successful preflight Job with its log, so its warnings go where
// users look: Helm 4 prints the log on success too, the preflight may record Events, and the NOTES point to them.
func TestPreflightWarningsReachTheUser(t *testing.T) {
	t.Parallel()
	res, err := render(t, base())
	require.NoError(t, err)
	job, ok := res.Find("Job", "cr-connected-registry-preflight")
	require.True(t, ok)
	require.Contains(t, job.YAML, "helm.sh/hook-output-log-policy: hook-succeeded,hook-failed")
	role, ok := res.Find("Role", "cr-connected-registry-preflight")
	require.True(t, ok)
	require.Regexp(t, `resources: \["events"\]\s+verbs: \["create"\]`, role.YAML)
	require.Contains(t, res.Notes, "kubectl -n connected-registry get events --field-selector involvedObject.kind=Service,involvedObject.name=cr-connected-registry")
}

// TestEveryRegistryContainerHasALivenessProbe: registry-http (httpEnabled) had none, so a hung container kept the
// pod, and HTTPS with it, out of the Service (kube-score, polaris); the registry's own probe is registry-probe.
func TestEveryRegistryContainerHasALivenessProbe(t *testing.T) {
	t.Parallel()
	res, err := render(t, with(map[string]any{"httpEnabled": true}))
	require.NoError(t, err)
	d, ok := res.Find("Deployment", "cr-connected-registry")
	require.True(t, ok)
	for _, name := range []string{"registry", "registry-http"} {
		c := container(t, d, name)
		require.Contains(t, c, "livenessProbe", "container %s", name)
	}
	probe := container(t, d, "registry")["livenessProbe"].(map[string]any)["exec"].(map[string]any)["command"].([]any)
	require.Equal(t, []any{"/helpers/connected-registry", "registry-probe"}, probe[:2])
	spec := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	require.Equal(t, false, spec["shareProcessNamespace"], "the registry must not see the tls-reloader's processes")
}
