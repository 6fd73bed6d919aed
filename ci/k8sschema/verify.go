package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// verify compiles every generated schema the way kubeconform v0.8.0 does (draft 4, santhosh-tekuri/jsonschema v6),
// which also validates it against the draft 4 meta-schema. kubeconform reports a schema that does not compile as
// missing, far from its cause; this names the file.
func verify(files map[string][]byte) error {
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if name == IndexFile {
			continue
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(files[name]))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft4)
		url := "file:///" + name
		if err := c.AddResource(url, doc); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := c.Compile(url); err != nil {
			return fmt.Errorf("%s does not compile: %w", name, err)
		}
	}
	return nil
}
