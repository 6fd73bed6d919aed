package extbundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Template is the part of an ARM template the bundle uses.
type Template struct {
	Schema         string                     `json:"$schema"`
	ContentVersion string                     `json:"contentVersion"`
	Parameters     map[string]TemplateParam   `json:"parameters"`
	Variables      map[string]any             `json:"variables"`
	Resources      []map[string]any           `json:"resources"`
	Outputs        map[string]json.RawMessage `json:"outputs"`
	raw            []byte
}

// TemplateParam is one parameter of an ARM template.
type TemplateParam struct {
	Type          string `json:"type"`
	DefaultValue  any    `json:"defaultValue"`
	AllowedValues []any  `json:"allowedValues"`
	hasDefault    bool
}

// UnmarshalJSON records whether the parameter has a defaultValue at all (an empty string is one).
func (p *TemplateParam) UnmarshalJSON(b []byte) error {
	type plain TemplateParam
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(b, (*plain)(p)); err != nil {
		return err
	}
	_, p.hasDefault = raw["defaultValue"]
	return nil
}

// HasDefault says whether the parameter has a defaultValue.
func (p TemplateParam) HasDefault() bool { return p.hasDefault }

// ExtensionType is the resource type of a cluster extension.
const ExtensionType = "Microsoft.KubernetesConfiguration/extensions"

// AllowedResourceTypes are the only resource types the Marketplace accepts in a Kubernetes application's template.
var AllowedResourceTypes = []string{"Microsoft.ContainerService/managedClusters", ExtensionType}

// LoadTemplate reads an ARM template.
func LoadTemplate(file string) (*Template, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var t Template
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s is not JSON: %w", file, err)
	}
	t.raw = data
	return &t, nil
}

// Extension returns the template's one cluster extension resource.
func (t *Template) Extension() (map[string]any, error) {
	var ext []map[string]any
	for _, r := range t.Resources {
		if r["type"] == ExtensionType {
			ext = append(ext, r)
		}
	}
	if len(ext) != 1 {
		return nil, fmt.Errorf("the template holds %d resources of type %s, want 1", len(ext), ExtensionType)
	}
	return ext[0], nil
}

// parameterRef is the one ARM expression configurationSettings may use here: a parameter as it is.
var parameterRef = regexp.MustCompile(`^\[parameters\('([^']+)'\)\]$`)

// parameterUse finds every parameter an expression anywhere in the template names.
var parameterUse = regexp.MustCompile(`parameters\('([^']+)'\)`)

// Settings are the extension's configurationSettings and configurationProtectedSettings, each key to its
// expression.
type Settings struct {
	Public, Protected map[string]string
}

// Settings returns the extension's settings with their expressions.
func (t *Template) Settings() (*Settings, error) {
	ext, err := t.Extension()
	if err != nil {
		return nil, err
	}
	props, _ := ext["properties"].(map[string]any)
	s := &Settings{Public: map[string]string{}, Protected: map[string]string{}}
	for field, dst := range map[string]map[string]string{"configurationSettings": s.Public, "configurationProtectedSettings": s.Protected} {
		m, ok := props[field].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("the extension's properties.%s is not an object", field)
		}
		for k, v := range m {
			str, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s[%q] is not a string: the extension manager takes settings as strings", field, k)
			}
			dst[k] = str
		}
	}
	return s, nil
}

// Keys returns every setting's key, sorted.
func (s *Settings) Keys() []string {
	var keys []string
	for k := range s.Public {
		keys = append(keys, k)
	}
	for k := range s.Protected {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Param returns the parameter a setting's expression names.
func (s *Settings) Param(key string) (string, error) {
	expr, ok := s.Public[key]
	if !ok {
		expr, ok = s.Protected[key]
	}
	if !ok {
		return "", fmt.Errorf("no setting %q", key)
	}
	m := parameterRef.FindStringSubmatch(expr)
	if m == nil {
		return "", fmt.Errorf("setting %q is %q: only [parameters('NAME')] is evaluated here", key, expr)
	}
	return m[1], nil
}

// ErrMissingParameter is returned when a parameter without a default is not given.
var ErrMissingParameter = errors.New("parameter has no defaultValue and was not given")

// Evaluate returns the settings the extension manager receives for the given parameters (the template's
// defaults for the others), as `key=value` pairs, public first then protected, each sorted by key: Helm's --set
// syntax, which is how the extension manager hands settings to Helm (the Marketplace samples' datatype-sample
// overrides list items as `key[0]` and escapes dots in keys as `\\.`, both --set syntax).
func (t *Template) Evaluate(params map[string]string) ([]string, error) {
	s, err := t.Settings()
	if err != nil {
		return nil, err
	}
	for p := range params {
		if _, ok := t.Parameters[p]; !ok {
			return nil, fmt.Errorf("parameter %q is not a parameter of the template", p)
		}
	}
	var out []string
	for _, group := range []map[string]string{s.Public, s.Protected} {
		keys := make([]string, 0, len(group))
		for k := range group {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p, err := s.Param(k)
			if err != nil {
				return nil, err
			}
			def, ok := t.Parameters[p]
			if !ok {
				return nil, fmt.Errorf("setting %q names parameter %q, which the template does not define", k, p)
			}
			v, given := params[p]
			if !given {
				if !def.HasDefault() {
					return nil, fmt.Errorf("%s (setting %q): %w", p, k, ErrMissingParameter)
				}
				v = fmt.Sprint(def.DefaultValue)
			}
			if len(def.AllowedValues) > 0 && !slices.ContainsFunc(def.AllowedValues, func(a any) bool { return fmt.Sprint(a) == v }) {
				return nil, fmt.Errorf("parameter %s=%q is not one of its allowedValues %v", p, v, def.AllowedValues)
			}
			if strings.Contains(v, ",") {
				return nil, fmt.Errorf("setting %q holds a comma, which --set would split", k)
			}
			out = append(out, k+"="+v)
		}
	}
	return out, nil
}

// UsedParameters returns the parameters the template's expressions name.
func (t *Template) UsedParameters() map[string]bool {
	used := map[string]bool{}
	for _, m := range parameterUse.FindAllStringSubmatch(string(t.raw), -1) {
		used[m[1]] = true
	}
	return used
}

// UIDefinition is the part of createUIDefinition.json the bundle checks.
type UIDefinition struct {
	Schema     string `json:"$schema"`
	Handler    string `json:"handler"`
	Version    string `json:"version"`
	Parameters struct {
		Basics  []map[string]any  `json:"basics"`
		Steps   []map[string]any  `json:"steps"`
		Outputs map[string]string `json:"outputs"`
	} `json:"parameters"`
}

// LoadUIDefinition reads a createUIDefinition.json.
func LoadUIDefinition(file string) (*UIDefinition, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var u UIDefinition
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, fmt.Errorf("%s is not JSON: %w", file, err)
	}
	return &u, nil
}
