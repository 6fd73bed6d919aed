package chart_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// helmCLIs are the helm binaries ci/tools.sh builds from the Go module proxy.
var helmCLIs = []struct{ name, version string }{{"helm3", "v3.22.0"}, {"helm4", "v4.3.1"}}

func helmBin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(chartrender.RepoRoot(), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `bash ci/tools.sh` to build the pinned helm CLIs", p)
	}
	return p
}

var (
	stageOnce sync.Once
	stageDir  string
	stageErr  error
)

// stagedChart is the chart with cert-manager's chart under charts/, as `helm dependency build` leaves it.
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

func runHelm(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestHelmLintStrict lints the chart with both helm CLIs in every scenario that helm lint can render (lint has
// no --api-versions, so scenarios that use a cert-manager already in the cluster are rendered by
// TestHelmTemplateMatchesSDK instead).
func TestHelmLintStrict(t *testing.T) {
	t.Parallel()
	chart := stagedChart(t)
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for _, cli := range helmCLIs {
		bin := helmBin(t, cli.name)
		t.Run(cli.name, func(t *testing.T) {
			t.Parallel()
			out, err := runHelm(t, bin, "version", "--short")
			require.NoError(t, err, out)
			require.Contains(t, out, cli.version)
			linted := 0
			for name, file := range scenarios {
				apis, err := chartrender.ScenarioAPIVersions(file)
				require.NoError(t, err)
				if len(apis) > 0 {
					continue
				}
				out, err := runHelm(t, bin, "lint", "--strict", "--kube-version", "1.37.2", chart, "-f", file)
				require.NoError(t, err, "helm lint --strict of scenario %s with %s:\n%s", name, cli.name, out)
				require.Contains(t, out, "1 chart(s) linted, 0 chart(s) failed")
				linted++
			}
			require.GreaterOrEqual(t, linted, 4)
			out, err = runHelm(t, bin, "lint", "--strict", "--kube-version", "1.37.2", chart, "--set", "tls.crtt=x")
			require.Error(t, err, "lint must fail on a misspelled key:\n%s", out)
			require.Contains(t, out, "additional properties 'crtt' not allowed")
		})
	}
}

// TestHelmTemplateMatchesSDK renders every scenario with both helm CLIs and requires the same objects as the
// Helm SDK renders for the golden files.
func TestHelmTemplateMatchesSDK(t *testing.T) {
	t.Parallel()
	chart := stagedChart(t)
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for _, cli := range helmCLIs {
		bin := helmBin(t, cli.name)
		for name, file := range scenarios {
			t.Run(cli.name+"/"+name, func(t *testing.T) {
				t.Parallel()
				apis, err := chartrender.ScenarioAPIVersions(file)
				require.NoError(t, err)
				args := []string{"template", "cr", chart, "--namespace", chartrender.DefaultNamespace, "--kube-version", "1.37.2", "-f", file}
				for _, a := range apis {
					args = append(args, "--api-versions", a)
				}
				out, err := runHelm(t, bin, args...)
				require.NoError(t, err, out)
				docs, err := chartrender.SplitYAML(strings.NewReader(out))
				require.NoError(t, err)
				sdk, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{file}, APIVersions: apis})
				require.NoError(t, err)
				want := map[string]bool{}
				for _, d := range sdk.Documents {
					want[d.Kind()+"/"+d.Name()] = true
				}
				got := map[string]bool{}
				for _, d := range docs {
					md, _ := d["metadata"].(map[string]any)
					labels, _ := md["labels"].(map[string]any)
					if labels["app.kubernetes.io/part-of"] != "connected-registry" {
						continue // cert-manager's own objects, when the chart installs it
					}
					got[d["kind"].(string)+"/"+md["name"].(string)] = true
				}
				require.Equal(t, sortedKeys(want), sortedKeys(got))
			})
		}
	}
}

// TestCertManagerDependency proves the dependency wiring with cert-manager's real chart staged under charts/:
// install=true renders cert-manager with its CRDs and our Issuers and Certificates as hooks after its
// startupapicheck; install=false renders none of cert-manager.
func TestCertManagerDependency(t *testing.T) {
	t.Parallel()
	chart := stagedChart(t)
	c, err := chartrender.LoadChart(chart)
	require.NoError(t, err)
	require.Len(t, c.Metadata.Dependencies, 1)
	dep := c.Metadata.Dependencies[0]
	require.Equal(t, "cert-manager", dep.Name)
	require.Equal(t, "certManager", dep.Alias)
	require.Equal(t, chartrender.CertManagerVersion, dep.Version)
	require.Equal(t, "https://charts.jetstack.io", dep.Repository)
	require.Equal(t, "cert-manager.install", dep.Condition)

	on, err := chartrender.Render(chartrender.Options{Chart: c, Values: base()})
	require.NoError(t, err)
	crds := 0
	for _, d := range on.OfKind("CustomResourceDefinition") {
		if strings.HasSuffix(d.Name(), "cert-manager.io") {
			crds++
		}
	}
	require.Equal(t, 6, crds, "cert-manager's CRDs are installed with it")
	deploy, ok := on.Find("Deployment", "cert-manager")
	require.True(t, ok, "cert-manager's controller is rendered")
	require.Contains(t, deploy.YAML, "quay.io/jetstack/cert-manager-controller:"+chartrender.CertManagerVersion)
	issuer, ok := on.Find("Issuer", "cr-connected-registry-ca")
	require.True(t, ok)
	require.Equal(t, "post-install,post-upgrade", issuer.Hook, "our Issuers wait for cert-manager's webhook")

	c2, err := chartrender.LoadChart(chart)
	require.NoError(t, err)
	off, err := chartrender.Render(chartrender.Options{Chart: c2, Values: with(map[string]any{"cert-manager": map[string]any{"install": false}}), APIVersions: []string{chartrender.CertManagerAPIVersion}})
	require.NoError(t, err)
	require.Empty(t, off.OfKind("CustomResourceDefinition"))
	issuer, ok = off.Find("Issuer", "cr-connected-registry-ca")
	require.True(t, ok)
	require.Empty(t, issuer.Hook, "with the cluster's cert-manager our Issuers are plain resources")
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
