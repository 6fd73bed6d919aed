package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSchemaFile(t *testing.T) {
	t.Parallel()
	// The names kubeconform v0.8.0 resolves "{{ .ResourceKind }}{{ .KindSuffix }}.json" to.
	tests := []struct{ apiVersion, kind, want string }{
		{"v1", "Service", "service-v1.json"},
		{"apps/v1", "Deployment", "deployment-apps-v1.json"},
		{"rbac.authorization.k8s.io/v1", "ClusterRole", "clusterrole-rbac-v1.json"},
		{"cert-manager.io/v1", "Certificate", "certificate-cert-manager-v1.json"},
		{"acme.cert-manager.io/v1", "Challenge", "challenge-acme-v1.json"},
		{"resource.k8s.io/v1beta2", "ResourceClaim", "resourceclaim-resource-v1beta2.json"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, schemaFile(tt.apiVersion, tt.kind), "%s %s", tt.apiVersion, tt.kind)
	}
}

func TestRenderRefusesTwoKindsInOneFile(t *testing.T) {
	t.Parallel()
	_, err := render([]resourceSchema{
		{GVK: gvk{Group: "monitoring.coreos.com", Version: "v1", Kind: "Probe"}, Source: "a", Schema: map[string]any{}},
		{GVK: gvk{Group: "monitoring.example.com", Version: "v1", Kind: "Probe"}, Source: "b", Schema: map[string]any{}},
	})
	require.EqualError(t, err, "monitoring.coreos.com/v1 Probe (from a) and monitoring.example.com/v1 Probe (from b) both resolve to probe-monitoring-v1.json")
}

// fakeModules lays out the two input modules in a temporary directory and returns a locator for them.
func fakeModules(t *testing.T) moduleLocator {
	t.Helper()
	root := t.TempDir()
	write := func(path, text string) {
		p := filepath.Join(root, path)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("kubernetes/"+swaggerPath, tinySwagger)
	write("cert-manager/"+crdDir+"/widgets.yaml", tinyCRD)
	write("cert-manager/"+crdDir+"/README.md", "not YAML: ignored")
	dirs := map[string]string{DefaultKubernetes: "kubernetes", DefaultCertManager: "cert-manager"}
	return func(_ context.Context, module string) (string, error) {
		d, ok := dirs[module]
		if !ok {
			return "", errors.New("unknown module " + module)
		}
		return filepath.Join(root, d), nil
	}
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	files := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		files[e.Name()] = string(data)
	}
	return files
}

func TestRun(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "_out", "schemas")
	o := Options{Out: out, Kubernetes: DefaultKubernetes, CertManager: DefaultCertManager, Verify: true, locate: fakeModules(t)}
	require.NoError(t, o.Complete())

	var stdout bytes.Buffer
	require.NoError(t, o.Run(t.Context(), &stdout))
	require.Equal(t, "k8sschema: wrote 4 schemas to "+out+"; validate with\n  kubeconform -strict -schema-location '"+
		out+"/{{ .ResourceKind }}{{ .KindSuffix }}.json'\n", stdout.String())
	first := readDir(t, out)
	require.Equal(t, []string{"deployment-apps-v1.json", "index.json", "status-resource-v1beta1.json", "status-v1.json", "widget-example-v1.json"},
		sortedKeys(first))
	require.JSONEq(t, `{
	  "schemaLocation": "{{ .ResourceKind }}{{ .KindSuffix }}.json",
	  "sources": {
	    "github.com/cert-manager/cert-manager@v1.21.2 deploy/crds/widgets.yaml": 1,
	    "k8s.io/kubernetes@v1.37.2 api/openapi-spec/swagger.json": 3
	  },
	  "schemas": {
	    "deployment-apps-v1.json": "apps/v1 Deployment",
	    "status-resource-v1beta1.json": "resource.k8s.io/v1beta1 Status",
	    "status-v1.json": "v1 Status",
	    "widget-example-v1.json": "example.cert-manager.io/v1 Widget"
	  }
	}`, first["index.json"])
	require.JSONEq(t, wantDeployment, first["deployment-apps-v1.json"])

	// A second run replaces the whole directory, stale files included, with identical bytes.
	require.NoError(t, os.WriteFile(filepath.Join(out, "stale-v1.json"), []byte("{}"), 0o644))
	require.NoError(t, o.Run(t.Context(), io.Discard))
	require.Equal(t, first, readDir(t, out), "the output must be deterministic")
	siblings, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Len(t, siblings, 1, "no temporary directory is left behind")
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{
			name:    "a module without a version is refused",
			args:    []string{"-kubernetes", "k8s.io/kubernetes"},
			wantErr: `flag -kubernetes="k8s.io/kubernetes" is not a module version such as "k8s.io/kubernetes@v1.37.2"`,
		},
		{
			name:    "the environment twin of a flag is read",
			env:     map[string]string{"K8SSCHEMA_CERT_MANAGER": "cert-manager"},
			wantErr: `flag -cert-manager="cert-manager" is not a module version such as "k8s.io/kubernetes@v1.37.2"`,
		},
		{
			name:    "an unparsable boolean in the environment names the variable",
			env:     map[string]string{"K8SSCHEMA_VERIFY": "maybe"},
			wantErr: `parse K8SSCHEMA_VERIFY="maybe": strconv.ParseBool: parsing "maybe": invalid syntax`,
		},
		{
			name:    "an empty output directory is refused",
			args:    []string{"-out", ""},
			wantErr: "flag -out must not be empty",
		},
		{
			name:    "a stray argument is refused",
			args:    []string{"schemas"},
			wantErr: `unexpected argument "schemas"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(k string) string { return tt.env[k] }
			err := run(t.Context(), tt.args, getenv, io.Discard, io.Discard)
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"-h"}, func(string) string { return "" }, io.Discard, &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, stderr.String(), "env K8SSCHEMA_OUT")
	require.Contains(t, stderr.String(), `(default "_out/schemas")`)
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	locate := fakeModules(t)
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{
			name:    "a module the locator cannot find is reported",
			o:       Options{Kubernetes: "k8s.io/kubernetes@v0.0.0", CertManager: DefaultCertManager},
			wantErr: "unknown module k8s.io/kubernetes@v0.0.0",
		},
		{
			name:    "a module without CRDs is reported",
			o:       Options{Kubernetes: DefaultKubernetes, CertManager: DefaultKubernetes},
			wantErr: "read CRDs of k8s.io/kubernetes@v1.37.2: open " + mustLocate(t, locate, DefaultKubernetes) + "/deploy/crds: no such file or directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.o.Out = t.TempDir()
			tt.o.locate = locate
			_, err := tt.o.Generate(t.Context())
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

func mustLocate(t *testing.T, locate moduleLocator, module string) string {
	t.Helper()
	dir, err := locate(t.Context(), module)
	require.NoError(t, err)
	return dir
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestGoModDownloadReportsTheGoCommandsError(t *testing.T) {
	t.Setenv("GOPROXY", "off")
	_, err := goModDownload(t.Context(), "example.invalid/none@v1.0.0")
	require.EqualError(t, err, "go mod download example.invalid/none@v1.0.0: example.invalid/none@v1.0.0: module lookup disabled by GOPROXY=off")
}
