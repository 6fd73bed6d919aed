package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/connected-registry/connected-registry"

// TestProductDependencies keeps the product apart from what tests it: no package of cmd/, internal/ (but
// internal/testing/ itself) or postrender/ may depend on internal/testing/, and the in-cluster binary, tests
// included, may not link Helm (a heavy module that does not belong in a small image), nor may the check logic it
// can share (internal/check, internal/preflight); the kubectl plugin links Helm through internal/check/pre only.
func TestProductDependencies(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	for pkg, deps := range goListDeps(t, root, "./cmd/...", "./internal/...", "./postrender/...") {
		if isTesting(pkg) {
			continue
		}
		for _, d := range deps {
			require.False(t, isTesting(d), "product package %s depends on test code %s", pkg, d)
		}
	}
	for pkg, deps := range goListDeps(t, root, "-test", "./cmd/connected-registry/...") {
		for _, d := range deps {
			require.False(t, isHelm(d), "the in-cluster binary's package %s depends on %s", pkg, d)
		}
	}
	// The checks after install are shared product logic: only check/pre (values and render) and the kubectl
	// plugin link Helm.
	for pkg, deps := range goListDeps(t, root, "./internal/check", "./internal/preflight") {
		for _, d := range deps {
			require.False(t, isHelm(d), "package %s, which the in-cluster binary may share, depends on %s", pkg, d)
		}
	}
}

func isHelm(pkg string) bool {
	return strings.HasPrefix(pkg, "helm.sh/") || strings.HasPrefix(pkg, "k8s.io/helm")
}

// goListDeps returns every package that args name with all it depends on.
func goListDeps(t *testing.T, dir string, args ...string) map[string][]string {
	t.Helper()
	cmd := exec.Command(goTool(t), append([]string{"list", "-f", "{{.ImportPath}}\t{{join .Deps \" \"}}"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "go list %s", strings.Join(args, " "))
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, list, _ := strings.Cut(line, "\t")
		deps[pkg] = strings.Fields(list)
	}
	require.NotEmpty(t, deps)
	return deps
}

func isTesting(pkg string) bool {
	return pkg == module+"/internal/testing" || strings.HasPrefix(pkg, module+"/internal/testing/")
}
