// Package chartrender renders the connected-registry chart in memory with the Helm SDK, the way
// `helm template` does, for tests of the chart and of the components that consume its output.
package chartrender

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// Defaults of Options.
const (
	DefaultReleaseName = "cr"
	DefaultNamespace   = "connected-registry"
	DefaultKubeVersion = "v1.37.2"
)

// CertManagerAPIVersion is the API group version that tells the chart cert-manager is installed.
const CertManagerAPIVersion = "cert-manager.io/v1"

// Options selects the values and the cluster capabilities of one render.
type Options struct {
	// ValuesFiles are merged in order, as `-f` does.
	ValuesFiles []string
	// Set holds `--set` expressions, applied after ValuesFiles.
	Set []string
	// Values is merged last.
	Values map[string]any
	// ReleaseName defaults to DefaultReleaseName.
	ReleaseName string
	// Namespace defaults to DefaultNamespace.
	Namespace string
	// KubeVersion defaults to DefaultKubeVersion.
	KubeVersion string
	// APIVersions are added to Helm's default capabilities, for example CertManagerAPIVersion.
	APIVersions []string
	// IsUpgrade renders as `helm template --is-upgrade`.
	IsUpgrade bool
	// ChartDir defaults to the repository's chart/connected-registry.
	ChartDir string
	// Chart, when set, is rendered instead of loading ChartDir (for example with a staged dependency).
	Chart *chart.Chart
}

// Document is one rendered Kubernetes object.
type Document struct {
	// Template is the chart template that produced it, for example
	// "connected-registry/templates/deployment.yaml".
	Template string
	// Hook is the value of its helm.sh/hook annotation, empty for a regular resource.
	Hook string
	// YAML is the document as rendered.
	YAML string
	// Object is the document parsed.
	Object map[string]any
}

// Kind returns the document's kind.
func (d Document) Kind() string { s, _ := d.Object["kind"].(string); return s }

// Name returns the document's metadata.name.
func (d Document) Name() string {
	m, _ := d.Object["metadata"].(map[string]any)
	s, _ := m["name"].(string)
	return s
}

// Result is the output of one render.
type Result struct {
	// Documents holds regular resources and hooks, in Helm's install order, hooks last.
	Documents []Document
	// Notes is the rendered NOTES.txt.
	Notes string
}

// Find returns the document of the given kind and name.
func (r *Result) Find(kind, name string) (Document, bool) {
	for _, d := range r.Documents {
		if d.Kind() == kind && d.Name() == name {
			return d, true
		}
	}
	return Document{}, false
}

// OfKind returns every document of the given kind.
func (r *Result) OfKind(kind string) []Document {
	var out []Document
	for _, d := range r.Documents {
		if d.Kind() == kind {
			out = append(out, d)
		}
	}
	return out
}

// YAML joins every document into one multi-document stream with `# Source:` comments, as helm template
// prints it.
func (r *Result) YAML() string {
	var b strings.Builder
	for _, d := range r.Documents {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", d.Template, strings.TrimSpace(d.YAML))
	}
	return b.String()
}

// ChartDir returns the path of chart/connected-registry in this repository.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "chart", "connected-registry")
}

// RepoRoot returns the root of this repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// LoadChart loads the chart from dir.
func LoadChart(dir string) (*chart.Chart, error) {
	c, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %q: %w", dir, err)
	}
	return c, nil
}

// MergedValues merges the value sources of o as the helm CLI does.
func (o Options) MergedValues() (map[string]any, error) {
	vo := values.Options{ValueFiles: o.ValuesFiles, Values: o.Set}
	vals, err := vo.MergeValues(getter.Providers{})
	if err != nil {
		return nil, err
	}
	if o.Values != nil {
		vals = chartutil.CoalesceTables(deepCopy(o.Values), vals)
	}
	return vals, nil
}

// Render renders the chart client-side, validating values against values.schema.json, as `helm template`
// does. A render-time `fail` comes back as an error holding its message.
func Render(o Options) (*Result, error) {
	c := o.Chart
	if c == nil {
		dir := o.ChartDir
		if dir == "" {
			dir = ChartDir()
		}
		var err error
		if c, err = LoadChart(dir); err != nil {
			return nil, err
		}
	}
	vals, err := o.MergedValues()
	if err != nil {
		return nil, err
	}
	kv := o.KubeVersion
	if kv == "" {
		kv = DefaultKubeVersion
	}
	kubeVersion, err := chartutil.ParseKubeVersion(kv)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = firstNonEmpty(o.ReleaseName, DefaultReleaseName)
	install.Namespace = firstNonEmpty(o.Namespace, DefaultNamespace)
	install.KubeVersion = kubeVersion
	install.APIVersions = o.APIVersions
	install.IsUpgrade = o.IsUpgrade
	rel, err := install.Run(c, vals)
	if err != nil {
		return nil, err
	}
	res := &Result{Notes: rel.Info.Notes}
	manifests := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(manifests))
	for k := range manifests {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	for _, k := range keys {
		d, err := parse(manifests[k])
		if err != nil {
			return nil, err
		}
		res.Documents = append(res.Documents, d)
	}
	sort.SliceStable(rel.Hooks, func(i, j int) bool { return rel.Hooks[i].Weight < rel.Hooks[j].Weight })
	for _, h := range rel.Hooks {
		d, err := parse(fmt.Sprintf("# Source: %s\n%s", h.Path, h.Manifest))
		if err != nil {
			return nil, err
		}
		res.Documents = append(res.Documents, d)
	}
	return res, nil
}

func parse(manifest string) (Document, error) {
	var d Document
	lines := strings.SplitN(manifest, "\n", 2)
	if len(lines) == 2 && strings.HasPrefix(lines[0], "# Source: ") {
		d.Template = strings.TrimPrefix(lines[0], "# Source: ")
		manifest = lines[1]
	}
	d.YAML = manifest
	if err := yaml.Unmarshal([]byte(manifest), &d.Object); err != nil {
		return d, fmt.Errorf("rendered %s is not YAML: %w", d.Template, err)
	}
	if d.Object == nil {
		return d, fmt.Errorf("rendered %s holds an empty document", d.Template)
	}
	if md, ok := d.Object["metadata"].(map[string]any); ok {
		if ann, ok := md["annotations"].(map[string]any); ok {
			d.Hook, _ = ann["helm.sh/hook"].(string)
		}
	}
	return d, nil
}

// SplitYAML splits a multi-document YAML stream into its non-empty documents.
func SplitYAML(r io.Reader) ([]map[string]any, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// ScenarioFiles returns the scenario values files under the chart's ci/ folder, by base name without
// extension.
func ScenarioFiles() (map[string]string, error) {
	matches, err := filepath.Glob(filepath.Join(ChartDir(), "ci", "*-values.yaml"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, errors.New("no scenario values files under chart/connected-registry/ci")
	}
	out := map[string]string{}
	for _, m := range matches {
		out[strings.TrimSuffix(filepath.Base(m), "-values.yaml")] = m
	}
	return out, nil
}

// ScenarioAPIVersions returns the extra capabilities a scenario renders with: cert-manager's API when the
// scenario uses a cert-manager that is already in the cluster (cert-manager.install=false while
// cert-manager.enabled is not false, nested or flat).
func ScenarioAPIVersions(valuesFile string) ([]string, error) {
	data, err := os.ReadFile(valuesFile)
	if err != nil {
		return nil, err
	}
	vals, err := chartutil.ReadValues(data)
	if err != nil {
		return nil, err
	}
	install, err := vals.PathValue("cert-manager.install")
	if err != nil || install != false {
		return nil, nil
	}
	if enabled, err := vals.PathValue("cert-manager.enabled"); err == nil && enabled == false {
		return nil, nil
	}
	if vals["cert-manager.enabled"] == false {
		return nil, nil
	}
	return []string{CertManagerAPIVersion}, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if mm, ok := v.(map[string]any); ok {
			out[k] = deepCopy(mm)
		} else {
			out[k] = v
		}
	}
	return out
}
