package main

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// tinyCRD is wrapped in the Helm actions cert-manager's chart puts around its CRDs, and has a served and an
// unserved version, a nullable field, an int-or-string, an open object, and a field with a pattern.
const tinyCRD = `{{- if .Values.crds.enabled }}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.cert-manager.io
spec:
  group: example.cert-manager.io
  names:
    kind: Widget
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: false
    storage: false
    schema:
      openAPIV3Schema:
        type: object
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        description: A Widget.
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [name]
            properties:
              name: {type: string, pattern: '^[a-z]+$'}
              size:
                anyOf: [{type: integer}, {type: string}]
                x-kubernetes-int-or-string: true
              port:
                x-kubernetes-int-or-string: true
              note: {type: string, nullable: true}
              mode: {type: string, enum: [Fast, Slow]}
              config:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                properties:
                  known: {type: string}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-crd}
{{- end }}
`

func TestCRDSchemas(t *testing.T) {
	t.Parallel()
	got, err := crdSchemas(tinyDefinitions(t), []byte(tinyCRD), "tiny")
	require.NoError(t, err)
	require.Len(t, got, 1, "only the served version")
	require.Equal(t, gvk{Group: "example.cert-manager.io", Version: "v1", Kind: "Widget"}, got[0].GVK)
	require.JSONEq(t, `{
	  "$schema": "http://json-schema.org/draft-04/schema#",
	  "type": "object",
	  "additionalProperties": false,
	  "required": ["spec", "apiVersion", "kind"],
	  "x-kubernetes-group-version-kind": [{"group": "example.cert-manager.io", "version": "v1", "kind": "Widget"}],
	  "properties": {
	    "apiVersion": {"type": "string", "enum": ["example.cert-manager.io/v1"]},
	    "kind": {"type": "string", "enum": ["Widget"]},
	    "metadata": {
	      "type": ["object", "null"],
	      "additionalProperties": false,
	      "properties": {
	        "name": {"type": ["string", "null"]},
	        "labels": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
	        "creationTimestamp": {"type": ["string", "null"], "format": "date-time"}
	      }
	    },
	    "spec": {
	      "type": "object",
	      "additionalProperties": false,
	      "required": ["name"],
	      "properties": {
	        "name": {"type": "string", "pattern": "^[a-z]+$"},
	        "size": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}], "x-kubernetes-int-or-string": true},
	        "port": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
	        "note": {"type": ["string", "null"]},
	        "mode": {"type": ["string", "null"], "enum": ["Fast", "Slow", null]},
	        "config": {
	          "type": ["object", "null"],
	          "x-kubernetes-preserve-unknown-fields": true,
	          "properties": {"known": {"type": ["string", "null"]}}
	        }
	      }
	    }
	  }
	}`, string(mustEncode(t, got[0].Schema)))

	sch := compileDraft4(t, got[0].Schema)
	tests := []struct {
		name      string
		doc       string
		wantValid bool
	}{
		{"a complete Widget is valid", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": {"name": "w", "size": 3, "port": "https", "mode": "Fast", "config": {"known": "k", "other": [1]}}}`, true},
		{"an unknown spec field is invalid", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "spec": {"name": "w", "nmae": "w"}}`, false},
		{"an unknown metadata field is invalid, as ObjectMeta replaced the open metadata", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "metadata": {"lables": {}}, "spec": {"name": "w"}}`, false},
		{"a value outside the enum is invalid", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "spec": {"name": "w", "mode": "Medium"}}`, false},
		{"a value against the pattern is invalid", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "spec": {"name": "W1"}}`, false},
		{"a missing required field is invalid", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "spec": {}}`, false},
		{"optional fields take null", `{"apiVersion": "example.cert-manager.io/v1", "kind": "Widget", "spec": {"name": "w", "note": null, "mode": null, "size": null, "port": null}}`, true},
		{"the unserved version's apiVersion is invalid", `{"apiVersion": "example.cert-manager.io/v1alpha1", "kind": "Widget", "spec": {"name": "w"}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(tt.doc)))
			require.NoError(t, err)
			err = sch.Validate(doc)
			if tt.wantValid {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestCRDSchemasErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{
			name:    "a v1beta1 CustomResourceDefinition is refused",
			yaml:    "apiVersion: apiextensions.k8s.io/v1beta1\nkind: CustomResourceDefinition\nmetadata: {name: a.b}\n",
			wantErr: `CustomResourceDefinition a.b: apiVersion "apiextensions.k8s.io/v1beta1" is not apiextensions.k8s.io/v1`,
		},
		{
			name:    "a served version without a schema is refused",
			yaml:    "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: a.b}\nspec: {group: b, names: {kind: A}, versions: [{name: v1, served: true}]}\n",
			wantErr: "CustomResourceDefinition a.b: version v1 has no openAPIV3Schema",
		},
		{
			name:    "YAML that does not parse names the document",
			yaml:    "a: b\n---\na: [\n",
			wantErr: "document 2: yaml: line 3: did not find expected node content",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := crdSchemas(tinyDefinitions(t), []byte(tt.yaml), "tiny")
			require.EqualError(t, err, tt.wantErr)
		})
	}
}
