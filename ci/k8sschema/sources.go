package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// gvk is the group, version and kind of a resource.
type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// APIVersion returns the apiVersion a manifest of this kind carries: the version alone for the core group.
func (g gvk) APIVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

func (g gvk) String() string { return g.APIVersion() + " " + g.Kind }

// resourceSchema is the standalone schema of one kind.
type resourceSchema struct {
	GVK gvk
	// Source names where it came from, for example "k8s.io/kubernetes@v1.37.2 api/openapi-spec/swagger.json".
	Source string
	Schema map[string]any
}

// decodeJSON decodes one JSON value, keeping numbers as written.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the first JSON value")
	}
	return nil
}

// parseSwagger returns the definitions of an OpenAPI v2 document.
func parseSwagger(data []byte) (map[string]any, error) {
	var doc struct {
		Swagger     string         `json:"swagger"`
		Definitions map[string]any `json:"definitions"`
	}
	if err := decodeJSON(data, &doc); err != nil {
		return nil, fmt.Errorf("parse OpenAPI v2 document: %w", err)
	}
	if !strings.HasPrefix(doc.Swagger, "2.") {
		return nil, fmt.Errorf("swagger version %q is not an OpenAPI v2 document", doc.Swagger)
	}
	if len(doc.Definitions) == 0 {
		return nil, errors.New("the OpenAPI v2 document has no definitions")
	}
	return doc.Definitions, nil
}

// kubernetesSchemas converts, for each group-version-kind, every definition that has
// x-kubernetes-group-version-kind, in definition name order.
func kubernetesSchemas(defs map[string]any, source string) ([]resourceSchema, error) {
	var out []resourceSchema
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		def, _ := defs[name].(map[string]any)
		raw, ok := def["x-kubernetes-group-version-kind"]
		if !ok {
			continue
		}
		var gvks []gvk
		if err := remarshal(raw, &gvks); err != nil {
			return nil, fmt.Errorf("%s: x-kubernetes-group-version-kind: %w", name, err)
		}
		for _, g := range gvks {
			c := converter{defs: defs}
			s, err := c.definition(name)
			if err != nil {
				return nil, err
			}
			out = append(out, resourceSchema{GVK: g, Source: source, Schema: topLevel(s, g)})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no definition has x-kubernetes-group-version-kind")
	}
	return out, nil
}

// topLevel finishes the schema of a resource: it names its dialect and its one group-version-kind, and accepts
// only that apiVersion and kind.
func topLevel(s map[string]any, g gvk) map[string]any {
	pinKind(s, g.APIVersion(), g.Kind)
	s["$schema"] = draft4
	s["x-kubernetes-group-version-kind"] = []any{map[string]any{"group": g.Group, "version": g.Version, "kind": g.Kind}}
	return s
}

// crd is the part of a CustomResourceDefinition (apiextensions.k8s.io/v1) the converter reads.
type crd struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema *struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// crdSchemas converts each served version of every CustomResourceDefinition in a YAML stream. The bare
// `metadata: {type: object}` of a custom resource is replaced by Kubernetes' ObjectMeta from defs, which the API
// server applies to every object.
func crdSchemas(defs map[string]any, data []byte, source string) ([]resourceSchema, error) {
	docs, err := yamlDocuments(stripTemplateLines(data))
	if err != nil {
		return nil, err
	}
	var out []resourceSchema
	for i, doc := range docs {
		var d crd
		if err := remarshal(doc, &d); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if d.Kind != "CustomResourceDefinition" {
			continue
		}
		if d.APIVersion != "apiextensions.k8s.io/v1" {
			return nil, fmt.Errorf("CustomResourceDefinition %s: apiVersion %q is not apiextensions.k8s.io/v1", d.Metadata.Name, d.APIVersion)
		}
		for _, v := range d.Spec.Versions {
			if !v.Served {
				continue
			}
			g := gvk{Group: d.Spec.Group, Version: v.Name, Kind: d.Spec.Names.Kind}
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				return nil, fmt.Errorf("CustomResourceDefinition %s: version %s has no openAPIV3Schema", d.Metadata.Name, v.Name)
			}
			c := converter{defs: defs}
			s, err := c.convert(v.Schema.OpenAPIV3Schema)
			if err != nil {
				return nil, fmt.Errorf("CustomResourceDefinition %s version %s: %w", d.Metadata.Name, v.Name, err)
			}
			if props, ok := s["properties"].(map[string]any); ok {
				if _, ok := props["metadata"]; ok {
					meta, err := c.definition(objectMetaDef)
					if err != nil {
						return nil, fmt.Errorf("CustomResourceDefinition %s: metadata: %w", d.Metadata.Name, err)
					}
					if !slices.Contains(anyList(s["required"]), any("metadata")) {
						allowNull(meta)
					}
					props["metadata"] = meta
				}
			}
			out = append(out, resourceSchema{GVK: g, Source: source, Schema: topLevel(s, g)})
		}
	}
	return out, nil
}

// stripTemplateLines drops the lines that hold only a Helm template action, such as
// `{{- if .Values.crds.enabled }}` around the CRDs of a chart. Plain YAML never starts a line with `{{`.
func stripTemplateLines(data []byte) []byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	out := make([]byte, 0, len(data))
	for _, l := range lines {
		t := bytes.TrimSpace(l)
		if bytes.HasPrefix(t, []byte("{{")) && bytes.HasSuffix(t, []byte("}}")) {
			continue
		}
		out = append(out, l...)
	}
	return out
}

// yamlDocuments returns the non-empty documents of a YAML stream.
func yamlDocuments(data []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for i := 1; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// remarshal converts v, decoded from YAML or JSON, into out through JSON, keeping numbers as written.
func remarshal(v, out any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return decodeJSON(data, out)
}

// readCRDFiles returns the YAML files of dir, sorted by name.
func readCRDFiles(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = data
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no YAML files in %s", dir)
	}
	return files, nil
}

// moduleLocator returns the directory of a module version ("path@version") in the module cache.
type moduleLocator func(ctx context.Context, module string) (string, error)

// goModDownload is the moduleLocator of `go mod download -json`, which fetches the module through GOPROXY unless
// the module cache already holds it. It runs in an empty directory with GOWORK=off, so that no go.mod, go.sum or
// go.work changes.
func goModDownload(ctx context.Context, module string) (string, error) {
	empty, err := os.MkdirTemp("", "k8sschema-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(empty)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module)
	cmd.Dir = empty
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct {
		Dir   string
		Error string
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil && runErr == nil {
		return "", fmt.Errorf("go mod download %s: parse output: %w", module, err)
	}
	switch {
	case info.Error != "":
		return "", fmt.Errorf("go mod download %s: %s", module, info.Error)
	case runErr != nil:
		return "", fmt.Errorf("go mod download %s: %w: %s", module, runErr, strings.TrimSpace(stderr.String()))
	case info.Dir == "":
		return "", fmt.Errorf("go mod download %s: no Dir in its output", module)
	}
	return info.Dir, nil
}
