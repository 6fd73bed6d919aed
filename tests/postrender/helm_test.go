// Package postrender_test runs the post-renderer through the pinned helm CLIs: Helm 3 with
// --post-renderer <binary>, Helm 4 with the postrenderer/v1 plugin installed by `helm plugin install`, and
// compares `helm template` output with golden files (-update rewrites them).
package postrender_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const pluginName = "connected-registry-postrender"

var (
	root      = chartrender.RepoRoot()
	binary    = filepath.Join(root, "bin", pluginName)
	pluginDir = filepath.Join(root, "postrender", "plugin", pluginName)
	helmCLIs  = []string{"helm3", "helm4"}
	stageOnce sync.Once
	stageDir  string
	stageErr  error
)

func requireFile(t *testing.T, p, fix string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: %s", p, fix)
	}
}

func stagedChart(t *testing.T) string {
	t.Helper()
	stageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cr-chart-")
		if err != nil {
			stageErr = err
			return
		}
		stageDir, stageErr = chartrender.StageChart(dir)
	})
	require.NoError(t, stageErr)
	return stageDir
}

// helmHome is a fresh helm home; for helm4 it has the plugin installed with `helm plugin install`.
func helmHome(t *testing.T, cli string) []string {
	t.Helper()
	home := t.TempDir()
	env := append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	if cli == "helm4" {
		requireFile(t, filepath.Join(pluginDir, "bin", pluginName), "run `make postrender` to build the plugin's binary")
		cmd := exec.Command(filepath.Join(root, "bin", cli), "plugin", "install", pluginDir)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "helm plugin install: %s", out)
	}
	return env
}

// template runs `helm template` of a scenario with the post-renderer and its arguments; it returns stdout and
// the combined output.
func template(t *testing.T, cli, scenario string, args ...string) (string, string, error) {
	t.Helper()
	return templateWith(t, cli, scenario, nil, args...)
}

// templateWith is template with extra helm arguments (--set …) after the scenario's values file.
func templateWith(t *testing.T, cli, scenario string, helmArgs []string, args ...string) (string, string, error) {
	t.Helper()
	requireFile(t, filepath.Join(root, "bin", cli), "run `bash ci/tools.sh` to build the pinned helm CLIs")
	requireFile(t, binary, "run `make postrender` to build the post-renderer")
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	file := scenarios[scenario]
	require.NotEmpty(t, file, "scenario %s", scenario)
	apis, err := chartrender.ScenarioAPIVersions(file)
	require.NoError(t, err)
	cmdArgs := []string{"template", "cr", stagedChart(t), "--namespace", chartrender.DefaultNamespace, "--kube-version", "1.37.2", "-f", file}
	for _, a := range apis {
		cmdArgs = append(cmdArgs, "--api-versions", a)
	}
	cmdArgs = append(cmdArgs, helmArgs...)
	if cli == "helm3" {
		cmdArgs = append(cmdArgs, "--post-renderer", binary)
	} else {
		cmdArgs = append(cmdArgs, "--post-renderer", pluginName)
	}
	for _, a := range args {
		cmdArgs = append(cmdArgs, "--post-renderer-args", a)
	}
	cmd := exec.Command(filepath.Join(root, "bin", cli), cmdArgs...)
	cmd.Dir = root
	cmd.Env = helmHome(t, cli)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), stdout.String() + stderr.String(), err
}

// TestGolden post-renders the chart with every component, the example site overlay, a command-line patch
// and both trust-distribution switches, through both helm CLIs.
func TestGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, scenario string
		args           []string
		contains       []string
	}{
		{"site-example", "cert-manager-preinstalled", []string{"--kustomize-dir=kustomize/examples/site"},
			[]string{"site.example.com/name: berlin-1", "mirror.example.com/connected-registry/distribution:v3.1.2", "HTTPS_PROXY", "cpu: 250m"}},
		{"tolerations", "cert-manager-preinstalled", []string{"--component=kustomize/components/tolerations"},
			[]string{"key: site.example.com/edge"}},
		{"http-proxy", "cert-manager-preinstalled", []string{"--component=kustomize/components/http-proxy"},
			[]string{"value: http://proxy.example.com:3128", ".svc,.cluster.local"}},
		{"resources", "cert-manager-preinstalled", []string{"--component=kustomize/components/resources"},
			[]string{"memory: 2Gi"}},
		{"image-mirror", "cert-manager-preinstalled", []string{"--component=kustomize/components/image-mirror"},
			[]string{"image: mirror.example.com/connected-registry/distribution:v3.1.2", "image: mirror.example.com/connected-registry/connected-registry:0.1.0"}},
		{"acr-image-mirror", "acr", []string{"--component=kustomize/components/image-mirror"},
			[]string{"image: mirror.example.com/acr/connected-registry:0.11.0"}},
		{"trust-off-component", "cert-manager-preinstalled", []string{"--component=kustomize/components/trust-distribution/off"}, nil},
		{"trust-off", "cert-manager-preinstalled", []string{"--trust-distribution=off"}, nil},
		{"trust-on", "own-trust", []string{"--trust-distribution=on"},
			[]string{"app.kubernetes.io/component: trust-agent", "--host=10.96.0.50:443", "--owner=connected-registry/cr"}},
		{"patch-json6902", "cert-manager-preinstalled", []string{"--patch=tests/postrender/testdata/revision-history.json@kind=Deployment,name=cr-connected-registry"},
			[]string{"revisionHistoryLimit: 7"}},
	}
	for _, cli := range helmCLIs {
		for _, tc := range cases {
			t.Run(cli+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				out, all, err := template(t, cli, tc.scenario, tc.args...)
				require.NoError(t, err, all)
				for _, s := range tc.contains {
					require.Contains(t, out, s)
				}
				golden := filepath.Join("testdata", "golden", cli, tc.name+".yaml")
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
					require.NoError(t, os.WriteFile(golden, []byte(out), 0o644))
				}
				want, err := os.ReadFile(golden)
				require.NoError(t, err, "no golden file: run go test ./tests/postrender -run TestGolden -update")
				require.Equal(t, string(want), out, "%s differs from %s: run with -update if intended", tc.name, golden)
			})
		}
	}
}

// TestTrustOffMatchesComponent: the trust-distribution/off component removes the objects the
// --trust-distribution=off switch removes; the switch also changes the arguments that name the agents.
func TestTrustOffMatchesComponent(t *testing.T) {
	t.Parallel()
	for _, cli := range helmCLIs {
		t.Run(cli, func(t *testing.T) {
			t.Parallel()
			a, all, err := template(t, cli, "default", "--trust-distribution=off")
			require.NoError(t, err, all)
			b, all, err := template(t, cli, "default", "--component=kustomize/components/trust-distribution/off")
			require.NoError(t, err, all)
			require.NotContains(t, a, "--daemonset=")
			line := "        - --daemonset=cr-connected-registry-trust-agent\n"
			require.Contains(t, b, line)
			b = strings.Replace(b, line, "", 1)
			if cli == "helm4" { // Helm 4 post-renders the preflight hook too
				b = strings.Replace(b, "--trust-distribution=true", "--trust-distribution=false", 1)
			}
			require.Equal(t, a, b)
			require.NotContains(t, a, "kind: DaemonSet")
			if cli == "helm4" {
				require.NotContains(t, a, "app.kubernetes.io/component: trust-agent")
			} else {
				require.Contains(t, a, "helm.sh/hook: post-delete", "Helm 3 never post-renders hooks: the agent's cleanup stays")
			}
		})
	}
}

// TestErrorsReachTheUser: a patch that matches nothing fails `helm template` with a message naming the patch
// file and its target, with Helm 3 (which prints the post-renderer's stderr) and Helm 4 (which drops it).
func TestErrorsReachTheUser(t *testing.T) {
	t.Parallel()
	for _, cli := range helmCLIs {
		t.Run(cli, func(t *testing.T) {
			t.Parallel()
			_, all, err := template(t, cli, "cert-manager-preinstalled",
				"--patch=tests/postrender/testdata/revision-history.json@kind=StatefulSet,name=cr-connected-registry")
			require.Error(t, err)
			require.Contains(t, all, "patch tests/postrender/testdata/revision-history.json (target kind=StatefulSet,name=cr-connected-registry) matches no object of the chart's output")

			_, all, err = template(t, cli, "cert-manager-preinstalled", "--kustomize-dir=tests/postrender/testdata/typo-overlay")
			require.Error(t, err)
			require.Contains(t, all, "patch "+filepath.Join(root, "tests/postrender/testdata/typo-overlay/registry.yaml")+
				" (target kind=Deployment,name=cr-connected-regsitry,namespace=connected-registry) matches no object of the chart's output")
			if cli == "helm4" {
				require.True(t, strings.Contains(all, "connected-registry-postrender failed:"), all)
			}
		})
	}
}
