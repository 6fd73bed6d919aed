package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// generate parses values and returns the schema as generic JSON.
func generate(t *testing.T, values string) map[string]any {
	t.Helper()
	v, err := Parse([]byte(values))
	require.NoError(t, err)
	out, err := v.Schema()
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(out, &schema))
	return schema
}

// at walks schema along the given property names, descending through "properties".
func at(t *testing.T, schema map[string]any, names ...string) map[string]any {
	t.Helper()
	cur := schema
	for _, n := range names {
		props, ok := cur["properties"].(map[string]any)
		require.Truef(t, ok, "no properties above %q", n)
		next, ok := props[n].(map[string]any)
		require.Truef(t, ok, "no property %q", n)
		cur = next
	}
	return cur
}

func propertyNames(t *testing.T, schema map[string]any) []string {
	t.Helper()
	props, ok := schema["properties"].(map[string]any)
	require.True(t, ok)
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	return names
}

func TestSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values string
		check  func(t *testing.T, schema map[string]any)
	}{
		{
			name: "nested mappings become strict objects at every level, the top level included",
			values: `
a:
  b:
    # -- Leaf.
    c: x
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, SchemaDraft, s["$schema"])
				require.Equal(t, false, s["additionalProperties"])
				for _, path := range [][]string{{"a"}, {"a", "b"}} {
					obj := at(t, s, path...)
					require.Equal(t, "object", obj["type"], path)
					require.Equal(t, false, obj["additionalProperties"], path)
				}
				require.Equal(t, map[string]any{"type": "string", "description": "Leaf.", "default": "x"},
					at(t, s, "a", "b", "c"))
			},
		},
		{
			name: "a leaf without @schema takes its type from its default",
			values: `
# -- S.
s: x
# -- B.
b: true
# -- I.
i: 3
# -- N.
n: 1.5
# -- L.
l: [1]
# -- M.
m: {}
`,
			check: func(t *testing.T, s map[string]any) {
				for key, want := range map[string]string{"s": "string", "b": "boolean", "i": "integer", "n": "number", "l": "array", "m": "object"} {
					require.Equal(t, want, at(t, s, key)["type"], key)
				}
			},
		},
		{
			name: "@schema keywords are merged into the generated schema and win over it",
			values: `
# @schema {"type": ["integer", "string"], "enum": [256, "big"], "description": "From @schema.", "default": 1}
# -- Size.
size: 256
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, map[string]any{
					"type": []any{"integer", "string"}, "enum": []any{256.0, "big"},
					"description": "From @schema.", "default": 1.0,
				}, at(t, s, "size"))
			},
		},
		{
			name: "a mapping whose @schema sets a type is a free-form value whose example children are not descended into",
			values: `
r:
  # @schema {"type": "object"}
  # -- Resources.
  resources:
    limits:
      memory: 1Gi
`,
			check: func(t *testing.T, s map[string]any) {
				res := at(t, s, "r", "resources")
				require.Equal(t, "object", res["type"])
				require.NotContains(t, res, "properties")
				require.NotContains(t, res, "additionalProperties")
				require.Equal(t, map[string]any{"limits": map[string]any{"memory": "1Gi"}}, res["default"])
				require.NotContains(t, propertyNames(t, s), "r.resources.limits.memory")
			},
		},
		{
			name: "an @schema without a type on a mapping keeps the properties and can open the object",
			values: `
# @schema {"additionalProperties": true}
# -- Subchart.
sub:
  # -- On.
  enabled: true
`,
			check: func(t *testing.T, s map[string]any) {
				sub := at(t, s, "sub")
				require.Equal(t, true, sub["additionalProperties"])
				require.Equal(t, "Subchart.", sub["description"])
				require.Equal(t, "boolean", at(t, s, "sub", "enabled")["type"])
			},
		},
		{
			name: "every leaf at depth two or more has a flat top-level twin without a default",
			values: `
# -- Top.
top: 1
tls:
  # @schema {"type": "string", "minLength": 0}
  # -- Certificate.
  crt: ""
registry:
  image:
    # -- Tag.
    tag: "3"
  # @schema {"type": "object"}
  # -- Resources.
  resources: {requests: {cpu: 1m}}
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, map[string]any{
					"type": "string", "minLength": 0.0, "description": "Flat form of `tls.crt`. Certificate.",
				}, at(t, s, "tls.crt"))
				require.Equal(t, "Flat form of `registry.image.tag`. Tag.", at(t, s, "registry.image.tag")["description"])
				require.Equal(t, "object", at(t, s, "registry.resources")["type"])
				names := propertyNames(t, s)
				require.NotContains(t, names, "registry.image", "objects with properties have no flat twin")
				require.NotContains(t, names, "registry.resources.requests.cpu", "free-form maps are not descended into")
			},
		},
		{
			name: "the top level accepts Helm's global object",
			values: `
# -- X.
x: 1
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, "object", at(t, s, "global")["type"])
				require.NotContains(t, at(t, s, "global"), "additionalProperties")
			},
		},
		{
			name: "a global key in values.yaml replaces the generic one",
			values: `
# @schema {"type": "object", "additionalProperties": false}
# -- Mine.
global: {}
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, "Mine.", at(t, s, "global")["description"])
				require.Equal(t, false, at(t, s, "global")["additionalProperties"])
			},
		},
		{
			name: "helm-docs' type hint and annotations shape the README only",
			values: `
# @schema {"type": ["boolean", "null"]}
# -- (bool) Old switch.
# @default -- unset
# @section -- Legacy
k: null
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, map[string]any{"type": []any{"boolean", "null"}, "description": "Old switch.", "default": nil}, at(t, s, "k"))
			},
		},
		{
			name: "a description continues over following lines and notes above it are ignored",
			values: `
# A note for maintainers.
# @schema {"type": "string"}
# -- First line
# second line.
k: ""
`,
			check: func(t *testing.T, s map[string]any) {
				require.Equal(t, "First line second line.", at(t, s, "k")["description"])
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, generate(t, tt.values))
		})
	}
}

func TestSchemaKeepsTheOrderOfValuesYAML(t *testing.T) {
	t.Parallel()
	v, err := Parse([]byte(`
zeta:
  # -- Z.
  b: 1
  # -- A.
  a: 2
# -- Alpha.
alpha: 3
`))
	require.NoError(t, err)
	out, err := v.Schema()
	require.NoError(t, err)
	s := string(out)
	order := []string{`"zeta": {`, `"b": {`, `"a": {`, `"alpha": {`, `"zeta.b": {`, `"zeta.a": {`, `"global": {`}
	last := -1
	for _, key := range order {
		i := strings.Index(s, key)
		require.Greaterf(t, i, last, "%s should come after the keys before it in %s", key, s)
		last = i
	}
	require.True(t, strings.HasSuffix(s, "}\n"), "output ends with one newline")
	require.Contains(t, s, "\n  \"properties\": {\n    \"zeta\": {", "two-space indentation")
}

func TestGenerationIsDeterministic(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("testdata", "values.yaml"))
	require.NoError(t, err)
	var first []byte
	for i := range 20 {
		v, err := Parse(data)
		require.NoError(t, err)
		schema, err := v.Schema()
		require.NoError(t, err)
		if i == 0 {
			first = schema
			continue
		}
		require.Equal(t, string(first), string(schema), "run %d", i)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		values  string
		wantIs  error
		wantErr []string
	}{
		{
			name:    "a leaf without a description fails naming its path and line",
			values:  "tls:\n  # @schema {\"type\": \"string\"}\n  crt: \"\"\n",
			wantIs:  ErrNoDescription,
			wantErr: []string{`line 3: key "tls.crt": key has no "# --" description`},
		},
		{
			name:    "a free-form map without a description fails like a leaf",
			values:  "# @schema {\"type\": \"object\"}\nresources:\n  limits: {}\n",
			wantIs:  ErrNoDescription,
			wantErr: []string{`line 2: key "resources"`},
		},
		{
			name:    "every missing description is reported, not only the first",
			values:  "a:\n  b: 1\n  c: 2\n",
			wantIs:  ErrNoDescription,
			wantErr: []string{`line 2: key "a.b"`, `line 3: key "a.c"`},
		},
		{
			name:    "a comment separated from its key by a blank line does not document it",
			values:  "# -- Detached.\n\n# @schema {\"type\": \"string\"}\nk: \"\"\n",
			wantIs:  ErrNoDescription,
			wantErr: []string{`key "k"`},
		},
		{
			name:    "an @schema that is not valid JSON fails naming the key",
			values:  "# @schema {\"type\": string}\n# -- K.\nk: \"\"\n",
			wantIs:  ErrBadAnnotation,
			wantErr: []string{`line 3: key "k": invalid annotation: @schema`},
		},
		{
			name:    "an @schema that is not a JSON object fails",
			values:  "# @schema [\"string\"]\n# -- K.\nk: \"\"\n",
			wantIs:  ErrBadAnnotation,
			wantErr: []string{`is not a JSON object`},
		},
		{
			name:    "a misspelt annotation fails instead of being ignored",
			values:  "# -- K.\n# @shema {\"type\": \"string\"}\nk: \"\"\n",
			wantIs:  ErrBadAnnotation,
			wantErr: []string{`unknown annotation "@shema"`},
		},
		{
			name:    "two @schema lines on one key fail",
			values:  "# @schema {\"type\": \"string\"}\n# @schema {\"minLength\": 1}\n# -- K.\nk: \"\"\n",
			wantIs:  ErrBadAnnotation,
			wantErr: []string{`more than one "# @schema"`},
		},
		{
			name:    "an @schema below the description fails, since helm-docs would show it in the README",
			values:  "# -- K.\n# @schema {\"type\": \"string\"}\nk: \"\"\n",
			wantIs:  ErrBadAnnotation,
			wantErr: []string{`line 3: key "k": invalid annotation: "# @schema" after the "# --" description, where helm-docs would show it in the README: move it above`},
		},
		{
			name:    "a helm-docs annotation above the description fails like any unknown one",
			values:  "# @default -- x\n# -- K.\nk: \"\"\n",
			wantIs:  ErrBadAnnotation,
			wantErr: []string{`unknown annotation "@default"`},
		},
		{
			name:    "a null default without a type in @schema fails",
			values:  "# -- K.\nk: null\n",
			wantIs:  ErrCannotInferType,
			wantErr: []string{`line 2: key "k"`},
		},
		{
			name:    "a key containing a dot fails because it would clash with flat keys",
			values:  "# -- K.\ntls.crt: \"\"\n",
			wantIs:  ErrDottedKey,
			wantErr: []string{`line 2: key "tls.crt"`},
		},
		{
			name:    "a duplicate key fails",
			values:  "# -- K.\nk: 1\n# -- K.\nk: 2\n",
			wantIs:  ErrDuplicateKey,
			wantErr: []string{`line 4: key "k"`},
		},
		{
			name:    "a YAML merge key fails instead of hiding keys from the schema",
			values:  "# @schema {\"type\": \"object\"}\n# -- Base.\nbase: &b {x: 1}\nother:\n  <<: *b\n",
			wantIs:  ErrUnsupportedKey,
			wantErr: []string{`key "other": line 5: key "<<"`},
		},
		{
			name:    "a file that is not a mapping fails",
			values:  "- a\n- b\n",
			wantIs:  ErrNotAMapping,
			wantErr: []string{"not a YAML mapping"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.values))
			require.ErrorIs(t, err, tt.wantIs)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

// TestGolden generates the schema of testdata/values.yaml and compares it with its golden file; run with -update
// to rewrite it.
func TestGolden(t *testing.T) {
	t.Parallel()
	dir := "testdata"
	outputs, err := (&Options{
		ValuesPath: filepath.Join(dir, "values.yaml"),
		SchemaPath: filepath.Join(dir, "golden.schema.json"),
	}).Generate()
	require.NoError(t, err)
	for _, f := range outputs {
		if *update {
			require.NoError(t, os.WriteFile(f.path, f.data, 0o644))
			continue
		}
		want, err := os.ReadFile(f.path)
		require.NoError(t, err, "run go test ./ci/valuesdoc -run TestGolden -update")
		require.Equal(t, string(want), string(f.data), "%s is stale: run with -update", f.path)
	}
}
