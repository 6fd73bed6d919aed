package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// tinySwagger holds, in the shape of Kubernetes' swagger.json: a kind whose spec is a $ref with a description
// beside it, IntOrString both by $ref and by format, Quantity, a recursive type, a map, a required field, a
// property named "$ref", and a type with two group-version-kinds.
const tinySwagger = `{
  "swagger": "2.0",
  "info": {"title": "Kubernetes", "version": "unversioned"},
  "definitions": {
    "io.k8s.api.apps.v1.Deployment": {
      "description": "Deployment enables declarative updates for Pods and ReplicaSets.",
      "type": "object",
      "properties": {
        "apiVersion": {"description": "APIVersion defines the versioned schema.", "type": "string"},
        "kind": {"type": "string"},
        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "description": "Standard object metadata."},
        "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"}
      },
      "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    },
    "io.k8s.api.apps.v1.DeploymentSpec": {
      "type": "object",
      "required": ["selector"],
      "properties": {
        "replicas": {"type": "integer", "format": "int32"},
        "selector": {"type": "object", "additionalProperties": {"type": "string"}},
        "maxSurge": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
        "port": {"type": "string", "format": "int-or-string"},
        "memory": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
        "validation": {"$ref": "#/definitions/io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"}
      }
    },
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps": {
      "type": "object",
      "properties": {
        "$ref": {"type": "string"},
        "not": {"$ref": "#/definitions/io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"},
        "properties": {"type": "object", "additionalProperties": {"$ref": "#/definitions/io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"}}
      }
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
      "type": "object",
      "properties": {
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "creationTimestamp": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time"}
      }
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time"},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"description": "IntOrString.", "type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"description": "Quantity.", "type": "string"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status": {
      "type": "object",
      "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "code": {"type": "integer"}},
      "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}, {"group": "resource.k8s.io", "kind": "Status", "version": "v1beta1"}]
    }
  }
}`

// wantDeployment is the standalone, strict schema tinySwagger's Deployment converts to.
const wantDeployment = `{
  "$schema": "http://json-schema.org/draft-04/schema#",
  "type": "object",
  "additionalProperties": false,
  "required": ["apiVersion", "kind"],
  "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
  "properties": {
    "apiVersion": {"type": "string", "enum": ["apps/v1"]},
    "kind": {"type": "string", "enum": ["Deployment"]},
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
      "type": ["object", "null"],
      "additionalProperties": false,
      "required": ["selector"],
      "properties": {
        "replicas": {"type": ["integer", "null"], "format": "int32"},
        "selector": {"type": "object", "additionalProperties": {"type": "string"}},
        "maxSurge": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "port": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "memory": {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]},
        "validation": {
          "type": ["object", "null"],
          "additionalProperties": false,
          "properties": {
            "$ref": {"type": ["string", "null"]},
            "not": {},
            "properties": {"type": ["object", "null"], "additionalProperties": {}}
          }
        }
      }
    }
  }
}`

func tinyDefinitions(t *testing.T) map[string]any {
	t.Helper()
	defs, err := parseSwagger([]byte(tinySwagger))
	require.NoError(t, err)
	return defs
}

func TestKubernetesSchemas(t *testing.T) {
	t.Parallel()
	defs := tinyDefinitions(t)
	before, err := json.Marshal(defs)
	require.NoError(t, err)

	got, err := kubernetesSchemas(defs, "tiny")
	require.NoError(t, err)

	var kinds []string
	for _, s := range got {
		kinds = append(kinds, s.GVK.String())
	}
	require.Equal(t, []string{"apps/v1 Deployment", "v1 Status", "resource.k8s.io/v1beta1 Status"}, kinds,
		"one schema per group-version-kind, in definition name order")
	require.JSONEq(t, wantDeployment, string(mustEncode(t, got[0].Schema)))
	require.Equal(t, map[string]any{"type": "string", "enum": []any{"resource.k8s.io/v1beta1"}},
		got[2].Schema["properties"].(map[string]any)["apiVersion"],
		"each group-version-kind of a shared type accepts only its own apiVersion")

	after, err := json.Marshal(defs)
	require.NoError(t, err)
	require.JSONEq(t, string(before), string(after), "the definitions must not be modified")
}

func TestConvertErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		schema  string
		wantErr string
	}{
		{
			name:    "a reference to a missing definition names it and where it was",
			schema:  `{"properties": {"spec": {"$ref": "#/definitions/io.k8s.Missing"}}}`,
			wantErr: `properties: spec: unresolved $ref "#/definitions/io.k8s.Missing"`,
		},
		{
			name:    "a reference outside the document is refused",
			schema:  `{"items": {"$ref": "other.json#/definitions/x"}}`,
			wantErr: `items: unsupported $ref "other.json#/definitions/x": only #/definitions/ references are resolved`,
		},
		{
			name:    "properties that are not a map of schemas are refused",
			schema:  `{"properties": ["a"]}`,
			wantErr: `properties: is a []interface {}, not a map of schemas`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s map[string]any
			require.NoError(t, decodeJSON([]byte(tt.schema), &s))
			c := converter{defs: map[string]any{}}
			_, err := c.convert(s)
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

// TestDeploymentValidation compiles the converted Deployment as kubeconform does and validates documents with it.
func TestDeploymentValidation(t *testing.T) {
	t.Parallel()
	schemas, err := kubernetesSchemas(tinyDefinitions(t), "tiny")
	require.NoError(t, err)
	sch := compileDraft4(t, schemas[0].Schema)

	tests := []struct {
		name      string
		doc       string
		wantValid bool
	}{
		{"a complete Deployment is valid", `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "r", "labels": {"a": "b"}}, "spec": {"replicas": 1, "selector": {"app": "r"}, "maxSurge": "25%", "port": 443, "memory": "64Mi"}}`, true},
		{"a misspelled field is invalid", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicass": 1, "selector": {}}}`, false},
		{"an unknown top-level field is invalid", `{"apiVersion": "apps/v1", "kind": "Deployment", "extra": 1}`, false},
		{"an unknown field inside inlined metadata is invalid", `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"nmae": "r"}}`, false},
		{"an IntOrString takes an integer", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "maxSurge": 1, "port": "https"}}`, true},
		{"an IntOrString refuses a boolean", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "port": true}}`, false},
		{"an IntOrString refuses a fraction", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "maxSurge": 0.5}}`, false},
		{"a Quantity takes a number", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "memory": 0.5}}`, true},
		{"an optional field takes null, as the API server does", `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"creationTimestamp": null}, "spec": {"selector": {}, "replicas": null, "maxSurge": null}}`, true},
		{"a required field refuses null", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": null}}`, false},
		{"a wrong type is invalid", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "replicas": "one"}}`, false},
		{"a map value of the wrong type is invalid", `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"a": 1}}}`, false},
		{"a malformed timestamp is invalid", `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"creationTimestamp": "yesterday"}}`, false},
		{"another apiVersion is invalid", `{"apiVersion": "apps/v1beta2", "kind": "Deployment"}`, false},
		{"a missing kind is invalid", `{"apiVersion": "apps/v1"}`, false},
		{"anything goes below the point where a recursive type was cut", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "validation": {"$ref": "x", "not": {"anything": [1]}, "properties": {"a": {"b": "c"}}}}}`, true},
		{"the first level of a recursive type is still strict", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": {}, "validation": {"typo": 1}}}`, false},
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

// compileDraft4 compiles a schema the way kubeconform v0.8.0 does.
func compileDraft4(t *testing.T, s map[string]any) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(mustEncode(t, s)))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	require.NoError(t, c.AddResource("file:///schema.json", doc))
	sch, err := c.Compile("file:///schema.json")
	require.NoError(t, err)
	return sch
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	data, err := encode(v)
	require.NoError(t, err)
	return data
}
