package main

import (
	"fmt"
	"slices"
	"strings"
)

// Names of the Kubernetes OpenAPI definitions the converter treats specially.
const (
	// intOrStringDef is declared `type: string, format: int-or-string`, and accepts an integer too.
	intOrStringDef = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	// quantityDef is declared `type: string`; the API server takes a number too (`cpu: 1`, `cpu: 0.5`).
	quantityDef = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	// objectMetaDef replaces the bare `metadata: {type: object}` of custom resources.
	objectMetaDef = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
)

// draft4 is the JSON Schema dialect of every generated schema: kubeconform compiles schemas as draft 4, whose
// boolean exclusiveMinimum/exclusiveMaximum are also those of OpenAPI v2 and v3.0.
const draft4 = "http://json-schema.org/draft-04/schema#"

// converter turns OpenAPI v2 definitions and OpenAPI v3 CRD schemas into standalone, strict JSON schemas:
//   - every `$ref` is inlined; a reference to a definition that is already being inlined (a recursive type such as
//     JSONSchemaProps) becomes `{}`, which accepts anything;
//   - every object schema with `properties` and no `additionalProperties` gets `additionalProperties: false`,
//     unless it says `x-kubernetes-preserve-unknown-fields: true`;
//   - IntOrString (`format: int-or-string`, or `x-kubernetes-int-or-string` without alternatives) is
//     `oneOf: [string, integer]` and Quantity is `oneOf: [string, number]`;
//   - a property that is not required, or is `nullable`, also accepts null, as the API server does;
//   - descriptions are dropped: the validator never reads them and they are most of the bytes.
//
// The converter never modifies its input: each conversion returns a new tree.
type converter struct {
	// defs holds the OpenAPI v2 definitions `#/definitions/<name>` resolves to.
	defs map[string]any
	// stack holds the definitions being inlined, innermost last.
	stack []string
}

// definition returns the standalone schema of the named definition.
func (c *converter) definition(name string) (map[string]any, error) {
	return c.ref("#/definitions/" + name)
}

// ref resolves and converts one `$ref`.
func (c *converter) ref(ref string) (map[string]any, error) {
	name, ok := strings.CutPrefix(ref, "#/definitions/")
	if !ok {
		return nil, fmt.Errorf("unsupported $ref %q: only #/definitions/ references are resolved", ref)
	}
	switch name {
	case intOrStringDef:
		return intOrString(), nil
	case quantityDef:
		return quantity(), nil
	}
	if slices.Contains(c.stack, name) {
		return map[string]any{}, nil
	}
	def, ok := c.defs[name].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("unresolved $ref %q", ref)
	}
	c.stack = append(c.stack, name)
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()
	out, err := c.convert(def)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// convert returns the standalone, strict form of schema s.
func (c *converter) convert(s map[string]any) (map[string]any, error) {
	if ref, ok := s["$ref"]; ok {
		r, ok := ref.(string)
		if !ok {
			return nil, fmt.Errorf("$ref is a %T, not a string", ref)
		}
		return c.ref(r)
	}
	if s["format"] == "int-or-string" || (s["x-kubernetes-int-or-string"] == true && s["anyOf"] == nil && s["oneOf"] == nil) {
		out := intOrString()
		if s["nullable"] == true {
			allowNull(out)
		}
		return out, nil
	}
	out := make(map[string]any, len(s)+1)
	for k, v := range s {
		var err error
		switch k {
		case "description", "nullable":
			// Documentation only; nullable is applied below.
		case "properties", "patternProperties":
			out[k], err = c.schemaMap(v)
		case "items":
			if list, ok := v.([]any); ok {
				out[k], err = c.schemaList(list)
			} else {
				out[k], err = c.schemaOrBool(v)
			}
		case "additionalProperties", "additionalItems":
			out[k], err = c.schemaOrBool(v)
		case "allOf", "anyOf", "oneOf":
			list, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("%s is a %T, not a list", k, v)
			}
			out[k], err = c.schemaList(list)
		case "not":
			out[k], err = c.schemaOrBool(v)
		case "required":
			// Draft 4 wants at least one name.
			if list, ok := v.([]any); ok && len(list) > 0 {
				out[k] = v
			}
		default:
			// Values of other keywords are shared with the input: nothing below modifies them in place.
			out[k] = v
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	if s["nullable"] == true {
		allowNull(out)
	}
	if props, ok := out["properties"].(map[string]any); ok {
		required := stringSet(out["required"])
		for name, p := range props {
			if !required[name] {
				allowNull(p.(map[string]any))
			}
		}
		if _, set := out["additionalProperties"]; !set && s["x-kubernetes-preserve-unknown-fields"] != true {
			out["additionalProperties"] = false
		}
	}
	return out, nil
}

func (c *converter) schemaMap(v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("is a %T, not a map of schemas", v)
	}
	out := make(map[string]any, len(m))
	for name, p := range m {
		ps, ok := p.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is a %T, not a schema", name, p)
		}
		cs, err := c.convert(ps)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = cs
	}
	return out, nil
}

func (c *converter) schemaList(list []any) ([]any, error) {
	out := make([]any, len(list))
	for i, v := range list {
		s, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("[%d] is a %T, not a schema", i, v)
		}
		cs, err := c.convert(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out[i] = cs
	}
	return out, nil
}

func (c *converter) schemaOrBool(v any) (any, error) {
	switch s := v.(type) {
	case bool:
		return s, nil
	case map[string]any:
		return c.convert(s)
	default:
		return nil, fmt.Errorf("is a %T, not a schema or a boolean", v)
	}
}

func intOrString() map[string]any {
	return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
}

func quantity() map[string]any {
	return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
}

// allowNull makes schema s, a fresh tree from convert, also accept null.
func allowNull(s map[string]any) {
	switch t := s["type"].(type) {
	case string:
		if t != "null" {
			s["type"] = []any{t, "null"}
		}
	case []any:
		if !slices.Contains(t, any("null")) {
			s["type"] = append(slices.Clone(t), "null")
		}
	}
	if e, ok := s["enum"].([]any); ok && !slices.Contains(e, nil) {
		s["enum"] = append(slices.Clone(e), nil)
	}
	for _, k := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[k].([]any); ok && !slices.ContainsFunc(alts, isNullType) {
			s[k] = append(slices.Clone(alts), map[string]any{"type": "null"})
		}
	}
}

func isNullType(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["type"] == "null"
}

func stringSet(v any) map[string]bool {
	list, _ := v.([]any)
	set := make(map[string]bool, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			set[s] = true
		}
	}
	return set
}

// pinKind makes the top-level apiVersion and kind of a resource schema required, with the one value each that
// selects this schema.
func pinKind(s map[string]any, apiVersion, kind string) {
	props, ok := s["properties"].(map[string]any)
	if !ok {
		return
	}
	required := slices.Clone(anyList(s["required"]))
	for _, field := range [][2]string{{"apiVersion", apiVersion}, {"kind", kind}} {
		name, value := field[0], field[1]
		if _, ok := props[name]; !ok {
			continue
		}
		props[name] = map[string]any{"type": "string", "enum": []any{value}}
		if !slices.Contains(required, any(name)) {
			required = append(required, name)
		}
	}
	if len(required) > 0 {
		s["required"] = required
	}
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}
