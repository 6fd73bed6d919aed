package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SchemaLocation is the kubeconform `-schema-location` template, relative to the output directory, that finds the
// generated files: `kubeconform -schema-location '<out>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`.
const SchemaLocation = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

// IndexFile is written last into the output directory: its presence means the directory is complete.
const IndexFile = "index.json"

// schemaFile returns the file name SchemaLocation resolves to for a resource, as kubeconform v0.8.0's
// pkg/registry schemaPath computes it: ResourceKind is the lower-cased kind; KindSuffix is "-", the first label of
// the lower-cased group, "-" and the version, or only "-" and the version for the core group ("v1").
func schemaFile(apiVersion, kind string) string {
	group, version, grouped := strings.Cut(apiVersion, "/")
	suffix := "-" + strings.ToLower(strings.Split(group, ".")[0])
	if grouped {
		suffix += "-" + strings.ToLower(version)
	}
	return strings.ToLower(kind) + suffix + ".json"
}

// index describes a generated directory.
type index struct {
	// SchemaLocation is the template kubeconform needs, relative to the directory.
	SchemaLocation string `json:"schemaLocation"`
	// Sources are the inputs, each with the number of schemas it gave.
	Sources map[string]int `json:"sources"`
	// Schemas maps each file to the apiVersion and kind it validates.
	Schemas map[string]string `json:"schemas"`
}

// render encodes every schema into its file, and the index. Two kinds that resolve to the same file name are an
// error: kubeconform could not tell them apart.
func render(schemas []resourceSchema) (map[string][]byte, error) {
	files := make(map[string][]byte, len(schemas)+1)
	idx := index{SchemaLocation: SchemaLocation, Sources: map[string]int{}, Schemas: map[string]string{}}
	from := map[string]resourceSchema{}
	for _, s := range schemas {
		name := schemaFile(s.GVK.APIVersion(), s.GVK.Kind)
		if prev, dup := from[name]; dup {
			return nil, fmt.Errorf("%s (from %s) and %s (from %s) both resolve to %s", prev.GVK, prev.Source, s.GVK, s.Source, name)
		}
		data, err := encode(s.Schema)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", s.GVK, err)
		}
		from[name] = s
		files[name] = data
		idx.Sources[s.Source]++
		idx.Schemas[name] = s.GVK.String()
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	files[IndexFile] = append(data, '\n')
	return files, nil
}

// encode writes v as JSON with sorted keys, without HTML escaping (patterns hold <, > and &).
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeDir replaces dir with a directory holding exactly files. It writes a sibling temporary directory and renames
// it into place, so that dir is never seen half written; the index is written last. When another run put an
// identical index into dir meanwhile, that result is kept.
func writeDir(dir string, files map[string][]byte) (err error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".new-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(files))
	names = slices.DeleteFunc(names, func(n string) bool { return n == IndexFile })
	for _, name := range append(names, IndexFile) {
		if err := os.WriteFile(filepath.Join(tmp, name), files[name], 0o644); err != nil {
			return err
		}
	}
	old, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".old-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(old)
	if err := os.Rename(dir, filepath.Join(old, "prev")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("move aside %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if current, readErr := os.ReadFile(filepath.Join(dir, IndexFile)); readErr == nil && bytes.Equal(current, files[IndexFile]) {
			return os.RemoveAll(tmp)
		}
		return fmt.Errorf("replace %s: %w", dir, err)
	}
	return nil
}
