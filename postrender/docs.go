package postrender

import (
	"bytes"

	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Labels and annotations the post-renderer reads.
const (
	// ComponentLabel holds the chart's component name; the trust agent's objects carry TrustAgentComponent.
	ComponentLabel = "app.kubernetes.io/component"
	// TrustAgentComponent marks every object that exists only for trust distribution.
	TrustAgentComponent = "trust-agent"
	// PartOfLabel marks every object of the chart.
	PartOfLabel = "app.kubernetes.io/part-of"
	// HelmHookAnnotation marks a Helm hook.
	HelmHookAnnotation = "helm.sh/hook"
	// Helm4FilenameAnnotation is the annotation Helm 4 puts on each document it post-renders; it must survive.
	Helm4FilenameAnnotation = "postrenderer.helm.sh/postrender-filename"
)

// document is one YAML document of the chart's output: its text as Helm wrote it, and its parse, made when
// first needed (kustomize parses every document anyway; the post-renderer reads few of them).
type document struct {
	text  []byte
	node  *yaml.RNode
	index int
}

// n returns the parsed document. A document kustomize cannot read either parses as an empty mapping here:
// kustomize's own error then says what is wrong with it.
func (d *document) n() *yaml.RNode {
	if d.node == nil {
		node, err := yaml.Parse(string(d.text))
		if err != nil || node == nil || node.YNode().Kind != yaml.MappingNode {
			node = yaml.NewMapRNode(nil)
		}
		d.node = node
	}
	return d.node
}

func (d *document) kind() string      { return d.n().GetKind() }
func (d *document) name() string      { return d.n().GetName() }
func (d *document) namespace() string { return d.n().GetNamespace() }

func (d *document) gvk() resid.Gvk {
	g, v := resid.ParseGroupVersion(d.n().GetApiVersion())
	return resid.NewGvk(g, v, d.kind())
}

func (d *document) id() resid.ResId {
	return resid.NewResIdWithNamespace(d.gvk(), d.name(), d.namespace())
}

func (d *document) label(key string) string { return d.n().GetLabels()[key] }

func (d *document) annotation(key string) string { return d.n().GetAnnotations()[key] }

// splitDocuments splits a multi-document YAML stream at its `---` lines (a document marker cannot occur
// inside a block scalar). Documents holding only comments are dropped, as kustomize drops them.
func splitDocuments(in []byte) ([]*document, error) {
	var docs []*document
	start := 0
	add := func(text []byte) error {
		if onlyComments(text) {
			return nil
		}
		docs = append(docs, &document{text: text, index: len(docs)})
		return nil
	}
	for i := 0; i < len(in); {
		end := bytes.IndexByte(in[i:], '\n')
		line := in[i:]
		next := len(in)
		if end >= 0 {
			line = in[i : i+end]
			next = i + end + 1
		}
		if isDocumentMarker(line) {
			if err := add(in[start:i]); err != nil {
				return nil, err
			}
			start = next
		}
		i = next
	}
	if err := add(in[start:]); err != nil {
		return nil, err
	}
	return docs, nil
}

func isDocumentMarker(line []byte) bool {
	line = bytes.TrimRight(line, "\r")
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := line[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t'
}

// joinDocuments writes documents back into one stream.
func joinDocuments(docs []*document) []byte {
	var b bytes.Buffer
	for _, d := range docs {
		b.WriteString("---\n")
		b.Write(d.text)
		if len(d.text) > 0 && d.text[len(d.text)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// scalars calls fn with every scalar value (not map keys) of the document.
func scalars(n *yaml.Node, fn func(string)) {
	switch n.Kind {
	case yaml.ScalarNode:
		fn(n.Value)
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			scalars(n.Content[i], fn)
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			scalars(c, fn)
		}
	case yaml.AliasNode:
		if n.Alias != nil {
			scalars(n.Alias, fn)
		}
	}
}

func onlyComments(text []byte) bool {
	for _, line := range bytes.Split(text, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}
