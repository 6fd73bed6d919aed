package chart_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// kubeconformSchemaLocation is the kubeconform -schema-location template, relative to the schema directory, of the
// files `go run ./ci/k8sschema` writes (its SchemaLocation): for example deployment-apps-v1.json,
// service-v1.json and certificate-cert-manager-v1.json.
const kubeconformSchemaLocation = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

// kubeconformIndex is the file ci/k8sschema writes last into a complete schema directory.
const kubeconformIndex = "index.json"

// TestKubeconformScenarios validates every document each scenario renders against the Kubernetes v1.37 and
// cert-manager v1.21 schemas, strictly: an unknown field, a wrong type or a kind without a schema fails.
func TestKubeconformScenarios(t *testing.T) {
	t.Parallel()
	bin := kubeconformBinary(t)
	schemas := kubeconformSchemas(t)
	scenarios, err := chartrender.ScenarioFiles()
	require.NoError(t, err)
	for _, name := range slices.Sorted(maps.Keys(scenarios)) {
		file := scenarios[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			apis, err := chartrender.ScenarioAPIVersions(file)
			require.NoError(t, err)
			res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{file}, APIVersions: apis})
			require.NoError(t, err)
			require.NotEmpty(t, res.Documents, "scenario %s renders nothing", name)

			start := time.Now()
			report := kubeconformRun(t, bin, schemas, res.YAML())
			took := time.Since(start)
			var failures []string
			for _, r := range report.Resources {
				failures = append(failures, r.describe(res))
			}
			require.Empty(t, failures, "scenario %s (%s) fails validation:\n%s", name, file, strings.Join(failures, "\n"))
			require.Equal(t, kubeconformSummary{Valid: len(res.Documents)}, report.Summary,
				"every rendered document must be validated, none skipped")
			var kinds []string
			for _, d := range res.Documents {
				kinds = append(kinds, d.Kind()+"/"+d.Name())
			}
			t.Logf("%s: %d documents valid in %s: %s", name, len(kinds), took.Round(time.Millisecond), strings.Join(kinds, ", "))
		})
	}
}

// TestKubeconformRejects proves the validator bites: the schemas are strict and a missing schema is an error.
func TestKubeconformRejects(t *testing.T) {
	t.Parallel()
	bin := kubeconformBinary(t)
	schemas := kubeconformSchemas(t)
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: registry
spec:
  %s: 1
  selector:
    matchLabels: {app: registry}
  template:
    metadata:
      labels: {app: registry}
    spec:
      containers:
      - name: registry
        image: registry:3
        resources:
          requests: {cpu: 0.5, memory: 64Mi}
`
	const certificate = `apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: registry
spec:
  secretName: registry-tls
  issuerRef: {name: registry-ca, kind: Issuer}
  %s: [registry.connected-registry.svc]
`
	tests := []struct {
		name       string
		manifest   string
		wantStatus string
		// wantErrors are the path and message of each validation error.
		wantErrors []string
		wantMsg    string
	}{
		{
			name:       "a well-formed Deployment is valid, so the failures below come from their one mistake",
			manifest:   fmt.Sprintf(deployment, "replicas"),
			wantStatus: "statusValid",
		},
		{
			name:       "a well-formed cert-manager Certificate is valid",
			manifest:   fmt.Sprintf(certificate, "dnsNames"),
			wantStatus: "statusValid",
		},
		{
			name:       "a Deployment with spec.replicass misspelled is invalid",
			manifest:   fmt.Sprintf(deployment, "replicass"),
			wantStatus: "statusInvalid",
			wantErrors: []string{"/spec: additional properties 'replicass' not allowed"},
		},
		{
			name:       "a cert-manager Certificate with an unknown spec field is invalid",
			manifest:   fmt.Sprintf(certificate, "dnsNamez"),
			wantStatus: "statusInvalid",
			wantErrors: []string{"/spec: additional properties 'dnsNamez' not allowed"},
		},
		{
			name:       "a kind without a schema is an error, not skipped",
			manifest:   "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
			wantStatus: "statusError",
			wantMsg:    "could not find schema for Widget",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			report := kubeconformRun(t, bin, schemas, tt.manifest)
			if tt.wantStatus == "statusValid" {
				require.Empty(t, report.Resources)
				require.Equal(t, kubeconformSummary{Valid: 1}, report.Summary)
				return
			}
			require.Len(t, report.Resources, 1)
			r := report.Resources[0]
			require.Equal(t, tt.wantStatus, r.Status, r.Msg)
			var got []string
			for _, e := range r.ValidationErrors {
				got = append(got, e.Path+": "+e.Msg)
			}
			require.Equal(t, tt.wantErrors, got)
			if tt.wantMsg != "" {
				require.Equal(t, tt.wantMsg, r.Msg)
			}
		})
	}
}

// kubeconformReport is kubeconform's `-output json -summary` report. Resources lists only the documents that are
// not valid.
type kubeconformReport struct {
	Resources []kubeconformResource `json:"resources"`
	Summary   kubeconformSummary    `json:"summary"`
}

type kubeconformSummary struct {
	Valid   int `json:"valid"`
	Invalid int `json:"invalid"`
	Errors  int `json:"errors"`
	Skipped int `json:"skipped"`
}

type kubeconformResource struct {
	Kind             string `json:"kind"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Status           string `json:"status"`
	Msg              string `json:"msg"`
	ValidationErrors []struct {
		Path string `json:"path"`
		Msg  string `json:"msg"`
	} `json:"validationErrors"`
}

// describe returns one line per problem of r, naming the chart template that rendered it.
func (r kubeconformResource) describe(res *chartrender.Result) string {
	where := ""
	if d, ok := res.Find(r.Kind, r.Name); ok {
		where = " (" + d.Template + ")"
	}
	head := fmt.Sprintf("%s %s %q%s: %s", r.Version, r.Kind, r.Name, where, strings.TrimPrefix(r.Status, "status"))
	if len(r.ValidationErrors) == 0 {
		return head + ": " + r.Msg
	}
	var b strings.Builder
	b.WriteString(head)
	for _, e := range r.ValidationErrors {
		fmt.Fprintf(&b, "\n    at %s: %s", e.Path, e.Msg)
	}
	return b.String()
}

// kubeconformBinary returns bin/kubeconform, which ci/tools.sh builds.
func kubeconformBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(chartrender.RepoRoot(), "bin", "kubeconform")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run ci/tools.sh kubeconform (%v)", bin, err)
	}
	return bin
}

var kubeconformSchemasOnce = sync.OnceValues(kubeconformPrepareSchemas)

// kubeconformSchemas returns the schema directory: $KUBECONFORM_SCHEMAS as it is, or _out/schemas of the
// repository, which `go run ./ci/k8sschema` (re)generates once per test binary when it is missing, incomplete or
// older than the generator.
func kubeconformSchemas(t *testing.T) string {
	t.Helper()
	dir, err := kubeconformSchemasOnce()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func kubeconformPrepareSchemas() (string, error) {
	if dir := os.Getenv("KUBECONFORM_SCHEMAS"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, kubeconformIndex)); err != nil {
			return "", fmt.Errorf("KUBECONFORM_SCHEMAS=%s is not a schema directory of ci/k8sschema: %w", dir, err)
		}
		return dir, nil
	}
	root := chartrender.RepoRoot()
	dir := filepath.Join(root, "_out", "schemas")
	stale, err := kubeconformSchemasStale(root, dir)
	if err != nil || !stale {
		return dir, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./ci/k8sschema", "-out", dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("generate schemas with `go run ./ci/k8sschema -out %s`: %w\n%s", dir, err, out)
	}
	return dir, nil
}

// kubeconformSchemasStale reports whether dir lacks the index ci/k8sschema writes last, or is older than one of
// the generator's sources, which pin the Kubernetes and cert-manager versions.
func kubeconformSchemasStale(root, dir string) (bool, error) {
	idx, err := os.Stat(filepath.Join(dir, kubeconformIndex))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	sources, err := filepath.Glob(filepath.Join(root, "ci", "k8sschema", "*.go"))
	if err != nil {
		return false, err
	}
	for _, src := range sources {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		fi, err := os.Stat(src)
		if err != nil {
			return false, err
		}
		if fi.ModTime().After(idx.ModTime()) {
			return true, nil
		}
	}
	return false, nil
}

// kubeconformRun validates a YAML stream with kubeconform, strictly, against the schema directory only: no
// remote default location, and no -ignore-missing-schemas.
func kubeconformRun(t *testing.T, bin, schemas, manifest string) kubeconformReport {
	t.Helper()
	file := filepath.Join(t.TempDir(), "manifest.yaml")
	require.NoError(t, os.WriteFile(file, []byte(manifest), 0o644))
	cmd := exec.CommandContext(t.Context(), bin,
		"-strict", "-summary", "-output", "json",
		"-schema-location", filepath.Join(schemas, kubeconformSchemaLocation),
		file)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var report kubeconformReport
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("kubeconform (%v) printed no JSON report: %v\nstdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), stderr.String())
	}
	// kubeconform exits 1 exactly when a resource is invalid or an error.
	failed := report.Summary.Invalid+report.Summary.Errors > 0
	var exitErr *exec.ExitError
	if runErr != nil && !(failed && errors.As(runErr, &exitErr) && exitErr.ExitCode() == 1) {
		t.Fatalf("kubeconform: %v\nstderr:\n%s", runErr, stderr.String())
	}
	return report
}
