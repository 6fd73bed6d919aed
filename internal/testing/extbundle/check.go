package extbundle

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/yaml"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// Manifest is the packaging tool's manifest.yaml.
type Manifest struct {
	ApplicationName                 string         `json:"applicationName"`
	Publisher                       string         `json:"publisher"`
	Description                     string         `json:"description"`
	Version                         string         `json:"version"`
	HelmChart                       string         `json:"helmChart"`
	ClusterArmTemplate              string         `json:"clusterArmTemplate"`
	UIDefinition                    string         `json:"uiDefinition"`
	RegistryServer                  string         `json:"registryServer"`
	ExtensionRegistrationParameters map[string]any `json:"extensionRegistrationParameters"`
}

// LoadManifest reads a manifest.yaml strictly: a misspelled field is an error.
func LoadManifest(file string) (*Manifest, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &m, nil
}

// CheckOptions tune Check.
type CheckOptions struct {
	// HelmBins are helm CLIs that lint the chart with --strict; none skips the lint.
	HelmBins []string
	// Scenarios are the examples/ scenarios rendered through the template; nil means every one.
	Scenarios []string
}

// Problem is one failed check.
type Problem struct {
	Check string
	Err   error
}

func (p Problem) Error() string { return p.Check + ": " + p.Err.Error() }

var (
	versionRE    = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	dnsLabelRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	acrServerRE  = regexp.MustCompile(`^[a-zA-Z0-9]{5,50}\.azurecr\.(io|cn|us)$`)
	imageFlagRE  = regexp.MustCompile(`^--?[A-Za-z0-9-]*image=(.+)$`)
	digestRefRE  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	unpackedHint = "the Marketplace wants every chart unpacked"
)

// Check runs, offline, what the Marketplace's packaging tool checks of a bundle directory that it can: the
// manifest's fields and paths, a chart without archives, helm lint --strict, the ARM template (JSON, only the
// allowed resource types, one extension, every parameter defined and used), the UI definition (JSON, each output
// a template parameter, each parameter without default an output), every setting a key of the chart's schema,
// and for every examples/ scenario: its settings through the template render exactly as its files do, and every
// image of that render, arguments included, is one of global.azure.images by digest.
func Check(dir string, o CheckOptions) []Problem {
	var probs []Problem
	add := func(check string, err error) {
		if err != nil {
			probs = append(probs, Problem{check, err})
		}
	}
	m, err := LoadManifest(filepath.Join(dir, ManifestFile))
	if err != nil {
		add("manifest", err)
		return probs
	}
	add("manifest", checkManifest(dir, m))
	chartDir := filepath.Join(dir, filepath.FromSlash(m.HelmChart))
	add("chart unpacked", checkNoArchives(chartDir))
	t, err := LoadTemplate(filepath.Join(dir, filepath.FromSlash(m.ClusterArmTemplate)))
	if err != nil {
		add("ARM template", err)
		return probs
	}
	add("ARM template", checkTemplate(t))
	ui, err := LoadUIDefinition(filepath.Join(dir, filepath.FromSlash(m.UIDefinition)))
	if err != nil {
		add("UI definition", err)
		return probs
	}
	add("UI definition", checkUIDefinition(ui, t))
	add("settings in the chart's schema", checkSettingKeys(chartDir, t))
	scenarios, err := Scenarios(o.Scenarios)
	if err != nil {
		add("scenarios", err)
		return probs
	}
	for _, s := range scenarios {
		settings, apis, err := s.Settings(t)
		if err != nil {
			add("scenario "+s.Name, err)
			continue
		}
		add("scenario "+s.Name, checkScenario(chartDir, s, settings, apis))
		if len(apis) == 0 {
			for _, bin := range o.HelmBins {
				add(fmt.Sprintf("helm lint --strict (%s, scenario %s)", filepath.Base(bin), s.Name), helmLint(bin, chartDir, settings))
			}
		}
	}
	return probs
}

func checkManifest(dir string, m *Manifest) error {
	var errs []error
	for field, v := range map[string]string{"applicationName": m.ApplicationName, "publisher": m.Publisher, "description": m.Description,
		"helmChart": m.HelmChart, "clusterArmTemplate": m.ClusterArmTemplate, "uiDefinition": m.UIDefinition, "registryServer": m.RegistryServer} {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is empty", field))
		}
	}
	if !versionRE.MatchString(m.Version) {
		errs = append(errs, fmt.Errorf("version %q is not in the #.#.# form", m.Version))
	}
	if m.RegistryServer != "" && !acrServerRE.MatchString(m.RegistryServer) {
		errs = append(errs, fmt.Errorf("registryServer %q is not an Azure Container Registry login server (<name>.azurecr.io)", m.RegistryServer))
	}
	if _, err := os.Stat(filepath.Join(dir, m.HelmChart, "Chart.yaml")); err != nil {
		errs = append(errs, fmt.Errorf("helmChart %q holds no Chart.yaml: %w", m.HelmChart, err))
	}
	for field, p := range map[string]string{"clusterArmTemplate": m.ClusterArmTemplate, "uiDefinition": m.UIDefinition} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", field, p, err))
		}
	}
	erp := m.ExtensionRegistrationParameters
	scope, _ := erp["defaultScope"].(string)
	switch scope {
	case "cluster":
		ns, _ := erp["namespace"].(string)
		if !dnsLabelRE.MatchString(ns) {
			errs = append(errs, fmt.Errorf("extensionRegistrationParameters.namespace %q: defaultScope cluster needs a namespace, a DNS label", ns))
		}
	case "namespace":
	default:
		errs = append(errs, fmt.Errorf("extensionRegistrationParameters.defaultScope %q is neither cluster nor namespace", scope))
	}
	if sct, ok := erp["supportedClusterTypes"].(map[string]any); ok {
		for typ := range sct {
			if typ != "managedClusters" && typ != "connectedClusters" {
				errs = append(errs, fmt.Errorf("supportedClusterTypes.%s: the types are managedClusters and connectedClusters", typ))
			}
		}
	}
	return errors.Join(errs...)
}

func checkNoArchives(chartDir string) error {
	var found []string
	err := filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz")) {
			rel, _ := filepath.Rel(chartDir, p)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return fmt.Errorf("%s: %s", unpackedHint, strings.Join(found, ", "))
	}
	if _, err := os.Stat(filepath.Join(chartDir, "charts", "cert-manager", "Chart.yaml")); err != nil {
		return fmt.Errorf("the cert-manager subchart is not unpacked under charts/cert-manager: %w", err)
	}
	return nil
}

func checkTemplate(t *Template) error {
	var errs []error
	if !strings.Contains(t.Schema, "deploymentTemplate.json") {
		errs = append(errs, fmt.Errorf("$schema %q is not an ARM deployment template's", t.Schema))
	}
	for i, r := range t.Resources {
		typ, _ := r["type"].(string)
		if !slices.Contains(AllowedResourceTypes, typ) {
			errs = append(errs, fmt.Errorf("resources[%d] is a %s: the Marketplace allows only %s", i, typ, strings.Join(AllowedResourceTypes, " and ")))
		}
	}
	if _, err := t.Settings(); err != nil {
		errs = append(errs, err)
	}
	used := t.UsedParameters()
	for p := range used {
		if _, ok := t.Parameters[p]; !ok {
			errs = append(errs, fmt.Errorf("an expression names parameter %q, which is not defined", p))
		}
	}
	for p := range t.Parameters {
		if !used[p] {
			errs = append(errs, fmt.Errorf("parameter %q is never used", p))
		}
	}
	for _, v := range []string{"plan-name", "plan-publisher", "plan-offerID", "releaseTrain", "clusterExtensionTypeName"} {
		if t.Variables[v] != "DONOTMODIFY" {
			errs = append(errs, fmt.Errorf("variable %q must be DONOTMODIFY (the Marketplace fills it in)", v))
		}
	}
	if s, err := t.Settings(); err == nil {
		for k := range s.Protected {
			if p, err := s.Param(k); err == nil && !strings.EqualFold(t.Parameters[p].Type, "securestring") {
				errs = append(errs, fmt.Errorf("protected setting %q comes from parameter %q of type %s, not securestring", k, p, t.Parameters[p].Type))
			}
		}
	}
	return errors.Join(errs...)
}

func checkUIDefinition(ui *UIDefinition, t *Template) error {
	var errs []error
	if ui.Handler != "Microsoft.Azure.CreateUIDef" {
		errs = append(errs, fmt.Errorf("handler %q is not Microsoft.Azure.CreateUIDef", ui.Handler))
	}
	if !strings.Contains(ui.Schema, "CreateUIDefinition") {
		errs = append(errs, fmt.Errorf("$schema %q is not a CreateUIDefinition schema", ui.Schema))
	}
	for out := range ui.Parameters.Outputs {
		if _, ok := t.Parameters[out]; !ok {
			errs = append(errs, fmt.Errorf("output %q is not a parameter of the ARM template", out))
		}
	}
	for p, def := range t.Parameters {
		if _, ok := ui.Parameters.Outputs[p]; !ok && !def.HasDefault() {
			errs = append(errs, fmt.Errorf("the ARM template's parameter %q has no default and no output gives it", p))
		}
	}
	return errors.Join(errs...)
}

// checkSettingKeys requires every setting's key to be a key of the chart's values schema, flat or nested.
func checkSettingKeys(chartDir string, t *Template) error {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		return err
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		return err
	}
	s, err := t.Settings()
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range s.Keys() {
		if !SchemaHasKey(schema, k) {
			errs = append(errs, fmt.Errorf("setting %q is not a key of the chart's values.schema.json", k))
		}
	}
	return errors.Join(errs...)
}

// SchemaHasKey says whether a values schema declares the dotted key, as a flat top-level property or as nested
// properties.
func SchemaHasKey(schema map[string]any, key string) bool {
	props, _ := schema["properties"].(map[string]any)
	if _, ok := props[key]; ok {
		return true
	}
	node := schema
	for _, part := range strings.Split(key, ".") {
		props, _ := node["properties"].(map[string]any)
		next, ok := props[part].(map[string]any)
		if !ok {
			return false
		}
		node = next
	}
	return true
}

// Scenario is one examples/ directory.
type Scenario struct {
	Name string
	// Files are its config.yaml and protected-settings.json, filled in.
	Files []string
	// Values are the files' values, flat and nested keys as written.
	Values map[string]any
}

// Scenarios fills in the examples/ scenarios (all when names is nil) with test values: a ClusterIP, a connection
// string, and a self-signed certificate for the ClusterIP, made as the tutorial's openssl command makes it.
func Scenarios(names []string) ([]Scenario, error) {
	root := filepath.Join(chartrender.RepoRoot(), "examples")
	if names == nil {
		entries, err := os.ReadDir(root)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			// A scenario of the tutorial has its config.yaml; examples/nested is two releases of another shape.
			if _, err := os.Stat(filepath.Join(root, e.Name(), "config.yaml")); e.IsDir() && err == nil {
				names = append(names, e.Name())
			}
		}
	}
	vars, err := ScenarioVars()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "extbundle-scenarios-")
	if err != nil {
		return nil, err
	}
	var out []Scenario
	for _, n := range names {
		s := Scenario{Name: n, Values: map[string]any{}}
		for _, f := range []string{"config.yaml", "protected-settings.json"} {
			b, err := os.ReadFile(filepath.Join(root, n, f))
			if err != nil {
				return nil, err
			}
			var missing []string
			filled := os.Expand(string(b), func(k string) string {
				v, ok := vars[k]
				if !ok {
					missing = append(missing, k)
				}
				return v
			})
			if len(missing) > 0 {
				return nil, fmt.Errorf("examples/%s/%s uses %s, which the check does not fill in", n, f, strings.Join(missing, ", "))
			}
			dst := filepath.Join(tmp, n+"-"+f)
			if err := os.WriteFile(dst, []byte(filled), 0o600); err != nil {
				return nil, err
			}
			s.Files = append(s.Files, dst)
			vals, err := chartutil.ReadValues([]byte(filled))
			if err != nil {
				return nil, fmt.Errorf("examples/%s/%s: %w", n, f, err)
			}
			for k, v := range vals {
				s.Values[k] = v
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// ScenarioClusterIP is the ClusterIP the scenarios are filled in with.
const ScenarioClusterIP = "10.96.0.50"

// ScenarioVars are the values the examples' ${NAME} placeholders are filled in with.
func ScenarioVars() (map[string]string, error) {
	spec, err := certs.ParseKeySpec("ECDSA", 256)
	if err != nil {
		return nil, err
	}
	ca, err := certs.NewCA(rand.Reader, certs.Request{Key: spec, CommonName: "connected-registry",
		IPs: []netip.Addr{netip.MustParseAddr(ScenarioClusterIP)}, Duration: 365 * 24 * time.Hour}, time.Now())
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"SERVICE_IP":        ScenarioClusterIP,
		"CONNECTION_STRING": "ConnectedRegistryName=site1;SyncTokenName=site1-token;SyncTokenPassword=secret;ParentGatewayEndpoint=myregistry.westus2.data.azurecr.io;ParentEndpointProtocol=https",
		"TLS_CRT":           base64.StdEncoding.EncodeToString(ca.CertPEM),
		"TLS_KEY":           base64.StdEncoding.EncodeToString(ca.KeyPEM),
	}, nil
}

// leaves flattens values into dotted keys: a flat key as written, a nested one joined with dots.
func leaves(prefix string, v map[string]any, out map[string]any) {
	for k, val := range v {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if m, ok := val.(map[string]any); ok && len(m) > 0 {
			leaves(key, m, out)
			continue
		}
		out[key] = val
	}
}

// Settings returns the --set settings the extension manager receives when a user gives the template the
// scenario's values, and the API versions the scenario renders with (cert-manager's, when the cluster's is used).
// Every key the scenario sets must be a setting of the template.
func (s Scenario) Settings(t *Template) ([]string, []string, error) {
	ts, err := t.Settings()
	if err != nil {
		return nil, nil, err
	}
	flat := map[string]any{}
	leaves("", s.Values, flat)
	params := map[string]string{}
	var errs []error
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, err := ts.Param(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("examples/%s sets %s, which the ARM template does not pass: %w", s.Name, k, err))
			continue
		}
		params[p] = fmt.Sprint(flat[k])
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	settings, err := t.Evaluate(params)
	if err != nil {
		return nil, nil, err
	}
	apis, err := chartrender.ScenarioAPIVersions(s.Files[0])
	if err != nil {
		return nil, nil, err
	}
	return settings, apis, nil
}

// checkScenario renders the chart from the scenario's settings as the extension manager would and from its files,
// requires the same output, and requires every image of it to come from global.azure.images by digest.
func checkScenario(chartDir string, s Scenario, settings, apis []string) error {
	c, err := chartrender.LoadChart(chartDir)
	if err != nil {
		return err
	}
	ext, err := chartrender.Render(chartrender.Options{Chart: c, Set: settings, APIVersions: apis})
	if err != nil {
		return fmt.Errorf("rendering the template's settings: %w", err)
	}
	files, err := chartrender.Render(chartrender.Options{Chart: c, ValuesFiles: s.Files, APIVersions: apis})
	if err != nil {
		return fmt.Errorf("rendering examples/%s: %w", s.Name, err)
	}
	if ext.YAML() != files.YAML() {
		return fmt.Errorf("the template's settings render differently from examples/%s:\n%s", s.Name, firstDiff(files.YAML(), ext.YAML()))
	}
	allowed, err := ChartAzureImages(chartDir)
	if err != nil {
		return err
	}
	if len(allowed) == 0 {
		return errors.New("the chart's values.yaml sets no global.azure.images")
	}
	return CheckImages(ext, allowed)
}

// ChartAzureImages reads global.azure.images from the chart's values.yaml.
func ChartAzureImages(chartDir string) (map[string]AzureImage, error) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	var v struct {
		Global struct {
			Azure struct {
				Images map[string]AzureImage `json:"images"`
			} `json:"azure"`
		} `json:"global"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v.Global.Azure.Images, nil
}

// ImageRef is one image reference of a rendered object.
type ImageRef struct {
	Object, Path, Ref string
}

// ImageRefs returns every image reference of a render: each `image` field and each argument or command word of
// the form --<...>image=<ref>.
func ImageRefs(res *chartrender.Result) []ImageRef {
	var out []ImageRef
	for _, d := range res.Documents {
		obj := d.Kind() + "/" + d.Name()
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch t := v.(type) {
			case map[string]any:
				for k, val := range t {
					if s, ok := val.(string); ok && k == "image" {
						out = append(out, ImageRef{obj, path + "." + k, s})
						continue
					}
					walk(path+"."+k, val)
				}
			case []any:
				for i, val := range t {
					if s, ok := val.(string); ok {
						if m := imageFlagRE.FindStringSubmatch(s); m != nil {
							out = append(out, ImageRef{obj, fmt.Sprintf("%s[%d]", path, i), m[1]})
						}
						continue
					}
					walk(fmt.Sprintf("%s[%d]", path, i), val)
				}
			}
		}
		walk("", d.Object)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Object+out[i].Path < out[j].Object+out[j].Path })
	return out
}

// CheckImages requires every image reference of a render to be one of the entries by digest.
func CheckImages(res *chartrender.Result, allowed map[string]AzureImage) error {
	refs := map[string]bool{}
	for _, a := range allowed {
		refs[a.Ref()] = true
	}
	var errs []error
	found := ImageRefs(res)
	if len(found) == 0 {
		return errors.New("the render holds no image reference")
	}
	for _, r := range found {
		switch {
		case !digestRefRE.MatchString(r.Ref):
			errs = append(errs, fmt.Errorf("%s %s is %s, not by digest", r.Object, r.Path, r.Ref))
		case !refs[r.Ref]:
			errs = append(errs, fmt.Errorf("%s %s is %s, not an image of global.azure.images", r.Object, r.Path, r.Ref))
		}
	}
	return errors.Join(errs...)
}

func helmLint(bin, chartDir string, settings []string) error {
	args := []string{"lint", "--strict", "--kube-version", strings.TrimPrefix(chartrender.DefaultKubeVersion, "v"), chartDir}
	for _, s := range settings {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0 chart(s) failed") {
		return fmt.Errorf("%v:\n%s", err, out)
	}
	return nil
}

// firstDiff shows where two renders first differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if !reflect.DeepEqual(x, y) {
			return fmt.Sprintf("line %d:\n  examples: %s\n  settings: %s", i+1, x, y)
		}
	}
	return "(same lines, different length)"
}
