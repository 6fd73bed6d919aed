package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// SchemaDraft is the JSON Schema dialect of the generated schema. Helm 3 and 4 validate with
// santhosh-tekuri/jsonschema/v6, which asserts `format` (ipv4, ipv6, ...) only for draft-07 and older: a schema
// without `$schema`, or with draft 2019-09/2020-12, would treat every `format` as a mere annotation.
const SchemaDraft = "http://json-schema.org/draft-07/schema#"

// Errors a maintainer of values.yaml can act on.
var (
	ErrNoDescription    = errors.New(`key has no "# --" description`)
	ErrBadAnnotation    = errors.New("invalid annotation")
	ErrCannotInferType  = errors.New(`cannot infer a type from the default; add "# @schema {\"type\": ...}"`)
	ErrDottedKey        = errors.New("key contains a dot, which clashes with the flat form of nested keys")
	ErrFlatKeyCollision = errors.New("flat form of a nested key collides with a top-level key")
	ErrNotAMapping      = errors.New("values file is not a YAML mapping")
	ErrDuplicateKey     = errors.New("duplicate key")
	ErrUnsupportedKey   = errors.New("only plain string keys are supported (no merge keys or complex keys)")
)

// Key is one key of values.yaml with its documentation.
type Key struct {
	// Path is the key's path from the top level, e.g. ["tls", "crt"].
	Path []string
	// Line is the key's line in values.yaml.
	Line int
	// Description is the text of the key's `# --` comment, joined into one line.
	Description string
	// Override holds the keywords of the key's `# @schema` comment, or nil.
	Override *object
	// Default is the key's value in values.yaml.
	Default any
	// Children are the documented keys below this one; nil unless the key is an object with properties.
	Children []*Key
}

// Name is the key's dotted path, e.g. "tls.crt", which is also the name of its flat form.
func (k *Key) Name() string { return strings.Join(k.Path, ".") }

// IsObject reports whether the key becomes an object schema with properties, instead of a documented leaf.
func (k *Key) IsObject() bool { return k.Children != nil }

// Values is a parsed values.yaml.
type Values struct {
	Keys []*Key
}

// Parse reads values.yaml. It returns every problem it finds, joined, each naming the key's path and line.
func Parse(data []byte) (*Values, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, ErrNotAMapping
	}
	var errs []error
	keys := parseMapping(doc.Content[0], nil, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Values{Keys: keys}, nil
}

func parseMapping(m *yaml.Node, parent []string, errs *[]error) []*Key {
	keys := []*Key{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], m.Content[i+1]
		path := append(append([]string(nil), parent...), kn.Value)
		name := strings.Join(path, ".")
		fail := func(err error) {
			*errs = append(*errs, fmt.Errorf("line %d: key %q: %w", kn.Line, name, err))
		}
		if kn.Kind != yaml.ScalarNode || kn.Tag == "!!merge" {
			fail(ErrUnsupportedKey)
			continue
		}
		if seen[kn.Value] {
			fail(ErrDuplicateKey)
			continue
		}
		seen[kn.Value] = true
		if strings.Contains(kn.Value, ".") {
			fail(ErrDottedKey)
			continue
		}
		desc, override, err := parseComment(kn.HeadComment)
		if err != nil {
			fail(err)
			continue
		}
		def, err := yamlValue(vn)
		if err != nil {
			fail(err)
			continue
		}
		key := &Key{Path: path, Line: kn.Line, Description: desc, Override: override, Default: def}
		for vn.Kind == yaml.AliasNode {
			vn = vn.Alias
		}
		// A non-empty mapping becomes an object with properties unless its @schema sets a type: then it is a
		// free-form value (resources, securityContext) whose children are only an example default.
		if vn.Kind == yaml.MappingNode && len(vn.Content) > 0 && (override == nil || !override.has("type")) {
			key.Children = parseMapping(vn, path, errs)
		} else {
			if desc == "" && (override == nil || !override.has("description")) {
				fail(ErrNoDescription)
				continue
			}
			if _, ok := jsonType(def); !ok && (override == nil || !override.has("type")) {
				fail(ErrCannotInferType)
				continue
			}
		}
		keys = append(keys, key)
	}
	return keys
}

// helmDocsAnnotations are the annotations helm-docs reads after a `# --` description; they shape the README only.
var helmDocsAnnotations = []string{"@default", "@section", "@notationType", "@raw", "@ignored"}

// helmDocsType is helm-docs' type hint at the start of a description, "(bool) Old switch.": the README's type
// column, not part of the text.
var helmDocsType = regexp.MustCompile(`^\([^)]*\)\s*`)

// parseComment reads a key's head comment: an optional `# @schema {json}`, then an optional `# -- text`
// description, continued by every following comment line, as helm-docs reads it for the README. The `# @schema`
// line must come before `# --`: helm-docs would take it for part of the description. Other lines above `# --` are
// notes for the reader and are ignored.
func parseComment(comment string) (string, *object, error) {
	var (
		desc     []string
		inDesc   bool
		override *object
	)
	for _, raw := range strings.Split(comment, "\n") {
		line := strings.TrimSpace(raw)
		if !strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		switch {
		case line == "--" || strings.HasPrefix(line, "-- "):
			if inDesc {
				return "", nil, fmt.Errorf("%w: more than one \"# --\" description", ErrBadAnnotation)
			}
			inDesc = true
			if text := strings.TrimSpace(strings.TrimPrefix(line, "--")); text != "" {
				desc = append(desc, text)
			}
		case strings.HasPrefix(line, "@schema ") || line == "@schema":
			if inDesc {
				return "", nil, fmt.Errorf("%w: \"# @schema\" after the \"# --\" description, where helm-docs would show it in the README: move it above", ErrBadAnnotation)
			}
			if override != nil {
				return "", nil, fmt.Errorf("%w: more than one \"# @schema\"", ErrBadAnnotation)
			}
			o, err := decodeJSONObject(strings.TrimSpace(strings.TrimPrefix(line, "@schema")))
			if err != nil {
				return "", nil, fmt.Errorf("%w: @schema: %w", ErrBadAnnotation, err)
			}
			override = o
		case strings.HasPrefix(line, "@"):
			name, _, _ := strings.Cut(line, " ")
			if !inDesc || !slices.Contains(helmDocsAnnotations, name) {
				return "", nil, fmt.Errorf("%w: unknown annotation %q", ErrBadAnnotation, name)
			}
		case inDesc && line != "":
			desc = append(desc, line)
		}
	}
	return helmDocsType.ReplaceAllString(strings.Join(desc, " "), ""), override, nil
}

// keySchema is the JSON Schema of one key: generated keywords first, then the key's @schema keywords, which win.
func keySchema(k *Key) *object {
	s := newObject()
	if k.IsObject() {
		s.set("type", "object")
		if k.Description != "" {
			s.set("description", k.Description)
		}
		s.set("additionalProperties", false)
		props := newObject()
		for _, c := range k.Children {
			props.set(c.Path[len(c.Path)-1], keySchema(c))
		}
		s.set("properties", props)
		mergeOverride(s, k.Override)
		return s
	}
	if t, ok := jsonType(k.Default); ok {
		s.set("type", t)
	}
	mergeOverride(s, k.Override)
	if !s.has("description") {
		s.set("description", k.Description)
	}
	if !s.has("default") {
		s.set("default", k.Default)
	}
	return s
}

func mergeOverride(s, override *object) {
	if override == nil {
		return
	}
	for _, kw := range override.keys {
		s.set(kw, override.vals[kw])
	}
}

// globalSchema accepts the `global` values Helm shares between a chart and its subcharts.
func globalSchema() *object {
	s := newObject()
	s.set("type", "object")
	s.set("description", "Values Helm shares with subcharts (`global`). The chart reads none of them.")
	return s
}

// walk calls fn for every key, parents before children, in values.yaml order.
func walk(keys []*Key, fn func(*Key)) {
	for _, k := range keys {
		fn(k)
		walk(k.Children, fn)
	}
}

// Schema builds values.schema.json: strict objects for nested keys, a flat top-level twin for every leaf at depth
// two or more (`"tls.crt"`, as the Azure extension's protected-settings file gives it) and a free-form `global`.
func (v *Values) Schema() ([]byte, error) {
	props := newObject()
	for _, k := range v.Keys {
		props.set(k.Path[0], keySchema(k))
	}
	var errs []error
	walk(v.Keys, func(k *Key) {
		if k.IsObject() || len(k.Path) < 2 {
			return
		}
		if props.has(k.Name()) {
			errs = append(errs, fmt.Errorf("line %d: key %q: %w", k.Line, k.Name(), ErrFlatKeyCollision))
			return
		}
		flat := keySchema(k).clone()
		flat.del("default") // the flat key is unset by default; the nested value applies
		desc, _ := flat.get("description")
		flat.set("description", strings.TrimSpace(fmt.Sprintf("Flat form of `%s`. %v", k.Name(), desc)))
		props.set(k.Name(), flat)
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !props.has("global") {
		props.set("global", globalSchema())
	}
	root := newObject()
	root.set("$schema", SchemaDraft)
	root.set("title", "Values of the connected-registry chart")
	root.set("description", "Generated from values.yaml by `go run ./ci/valuesdoc`; do not edit.")
	root.set("type", "object")
	root.set("additionalProperties", false)
	root.set("properties", props)
	out, err := marshalJSON(root, "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
