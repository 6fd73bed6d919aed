package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connected-registry/connected-registry/cmd/kubectl-connected_registry/app"
	"github.com/connected-registry/connected-registry/internal/check"
	"github.com/connected-registry/connected-registry/internal/cli"
)

func execute(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := app.Execute(context.Background(), append([]string{"kubectl-connected_registry"}, args...), app.Streams{Out: &out, Err: &errOut}, cli.MapEnv(nil))
	return out.String(), err
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
		code int
	}{
		{name: "no command should print the usage and fail", code: 2, want: "no command given: kubectl connected-registry check [--pre]"},
		{name: "an unknown command should fail", args: []string{"status"}, code: 2, want: `unknown command "status" of kubectl-connected_registry: the command is check`},
		{name: "values without --pre should fail naming them", args: []string{"check", "-f", "site.yaml", "--set", "a=b"}, code: 2,
			want: "--set, --values only apply to check --pre; after install, check reads the release as it is"},
		{name: "an unknown output should fail", args: []string{"check", "-o", "yaml"}, code: 2, want: `--output "yaml" is not text or json`},
		{name: "a positional argument should fail", args: []string{"check", "cr"}, code: 2, want: `check takes no arguments, got "cr"`},
		{name: "help should succeed", args: []string{"check", "--help"}, code: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := execute(tc.args...)
			require.Equal(t, tc.code, app.ExitCode(err), "%v", err)
			if tc.want != "" {
				require.EqualError(t, err, tc.want)
			} else {
				require.Contains(t, out, "kubectl connected-registry check --pre -f site.yaml")
			}
		})
	}
}

func TestHelmStatusLine(t *testing.T) {
	t.Parallel()
	rel := func(st release.Status, desc string) *release.Release {
		return &release.Release{Name: "cr", Namespace: "connected-registry", Version: 3, Info: &release.Info{Status: st, Description: desc},
			Chart: &chart.Chart{Metadata: &chart.Metadata{Name: "connected-registry", Version: "0.1.0"}}}
	}
	l := app.HelmStatusLine(rel(release.StatusDeployed, "Upgrade complete"))
	require.Equal(t, "✓ helm-release: revision 3 of chart connected-registry-0.1.0 is deployed", l.String())
	l = app.HelmStatusLine(rel(release.StatusFailed, "pre-install hooks failed: job failed: BackoffLimitExceeded"))
	require.Equal(t, check.Fail, l.Status)
	require.Equal(t, "revision 3 is failed: pre-install hooks failed: job failed: BackoffLimitExceeded", l.Message)
	require.Contains(t, l.Hint, "kubectl connected-registry check --pre")
	l = app.HelmStatusLine(rel(release.StatusPendingUpgrade, "Preparing upgrade"))
	require.Equal(t, check.Warn, l.Status)
	require.Contains(t, l.Hint, "helm rollback")
}

// TestRunOutputs: text and JSON carry the same lines, and a failed line makes the command fail with exit status 1
// after printing them.
func TestRunOutputs(t *testing.T) {
	t.Parallel()
	for _, output := range []string{"text", "json"} {
		o := &app.CheckOptions{Client: fake.NewClientset(), Namespace: "connected-registry", Release: "cr", Output: output, Timeout: time.Minute}
		require.NoError(t, o.Complete())
		var out bytes.Buffer
		err := o.Run(context.Background(), &out)
		require.ErrorIs(t, err, app.ErrChecksFailed)
		require.True(t, app.Reported(err))
		require.Equal(t, 1, app.ExitCode(err))
		if output == "json" {
			var r app.Report
			require.NoError(t, json.Unmarshal(out.Bytes(), &r))
			require.False(t, r.Success)
			require.Len(t, r.Checks, 1)
			require.Equal(t, check.Line{Check: check.CheckRegistryReady, Status: check.Fail,
				Message: "release cr has no registry Deployment in namespace connected-registry",
				Hint:    "check the release name and namespace (helm list -A); this command looks for the Deployment labelled app.kubernetes.io/instance=cr,app.kubernetes.io/component=registry in namespace connected-registry"}, r.Checks[0])
			continue
		}
		require.Equal(t, `connected-registry release cr in namespace connected-registry, after install

× registry-ready: release cr has no registry Deployment in namespace connected-registry
    hint: check the release name and namespace (helm list -A); this command looks for the Deployment labelled app.kubernetes.io/instance=cr,app.kubernetes.io/component=registry in namespace connected-registry

Status check results are ×
`, out.String())
	}
}
