package postrender

import (
	"bytes"
	"fmt"
	"strings"

	crkustomize "github.com/connected-registry/connected-registry/kustomize"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Placeholders of the generated trust-distribution component (kustomize/components/trust-distribution/on),
// replaced from the chart's output when --trust-distribution=on adds the node agent.
const (
	PlaceholderNamespace  = "__CR_NAMESPACE__"
	PlaceholderFullname   = "__CR_FULLNAME__"
	PlaceholderRelease    = "__CR_RELEASE__"
	PlaceholderClusterIP  = "__CR_CLUSTER_IP__"
	PlaceholderTLSSecret  = "__CR_TLS_SECRET__"
	PlaceholderHooksImage = "__CR_HOOKS_IMAGE__"
)

// DefaultHooksImageKey is the line of the generated component that records the chart's default hooks image,
// used when the chart's output shows no other.
const DefaultHooksImageKey = "# default-hooks-image: "

// applyTrust applies the trust-distribution switch to the chart's output.
func (r *Renderer) applyTrust(docs []*document) ([]*document, error) {
	switch r.trust {
	case TrustOff:
		kept := docs[:0:0]
		for _, d := range docs {
			if !bytes.Contains(d.text, []byte(TrustAgentComponent)) || d.label(ComponentLabel) != TrustAgentComponent {
				kept = append(kept, d)
			}
		}
		return kept, nil
	case TrustOn:
		for _, d := range docs {
			if bytes.Contains(d.text, []byte(TrustAgentComponent)) && d.label(ComponentLabel) == TrustAgentComponent {
				return docs, nil // rendered with trust distribution already
			}
		}
		tmpl, err := crkustomize.Components.ReadFile(crkustomize.TrustAgentFile)
		if err != nil {
			return nil, err
		}
		text, err := trustAgent(docs, tmpl)
		if err != nil {
			return nil, err
		}
		added, err := splitDocuments(text)
		if err != nil {
			return nil, fmt.Errorf("the trust-distribution component: %w", err)
		}
		if helm4Stream(docs) {
			// Helm 4 files every document by this annotation; without it Helm names them generated-by-postrender-N.
			for _, d := range added {
				if src := sourceComment(d.text); src != "" {
					if err := d.n().PipeE(yaml.SetAnnotation(Helm4FilenameAnnotation, src)); err != nil {
						return nil, err
					}
					text, err := d.n().String()
					if err != nil {
						return nil, err
					}
					d.text = []byte(text)
				}
			}
		} else {
			// Helm 3 installs what a post-renderer returns as plain resources: a post-delete hook added here
			// would run at install time. Leave the hooks out, and say what that costs.
			kept := added[:0:0]
			var dropped []string
			for _, d := range added {
				if d.annotation(HelmHookAnnotation) != "" {
					dropped = append(dropped, d.kind()+"/"+d.name())
					continue
				}
				kept = append(kept, d)
			}
			added = kept
			if len(dropped) > 0 && r.warn != nil {
				fmt.Fprintf(r.warn, "warning: trust distribution on: left out the hooks %s: Helm 3 does not post-render hooks, so "+
					"helm uninstall will not remove the node agent's files from the nodes (Helm 4 keeps them)\n", strings.Join(dropped, ", "))
			}
		}
		out := append(docs[:len(docs):len(docs)], added...)
		for i, d := range out {
			d.index = i
		}
		return out, nil
	}
	return docs, nil
}

// sourceComment returns the template named by a document's `# Source:` comment.
func sourceComment(text []byte) string {
	for _, line := range strings.Split(string(text), "\n") {
		if src, ok := strings.CutPrefix(line, "# Source: "); ok {
			return strings.TrimSpace(src)
		}
	}
	return ""
}

// helm4Stream reports whether Helm 4 produced the stream: it annotates every document with its file name.
func helm4Stream(docs []*document) bool {
	for _, d := range docs {
		if bytes.Contains(d.text, []byte(Helm4FilenameAnnotation)) && d.annotation(Helm4FilenameAnnotation) != "" {
			return true
		}
	}
	return false
}

// TrustParams are the values the trust agent takes from the chart's output.
type TrustParams struct {
	Namespace, Fullname, Release, ClusterIP, TLSSecret, HooksImage string
}

// trustAgentFromStream is trustAgent for a stream (tests and the generator use it).
func trustAgentFromStream(stream, tmpl []byte) ([]byte, error) {
	docs, err := splitDocuments(stream)
	if err != nil {
		return nil, err
	}
	return trustAgent(docs, tmpl)
}

// trustAgent fills the component's placeholders from the rendered registry Service (clusterIP, namespace,
// name, release) and Deployment (TLS Secret, hooks image).
func trustAgent(docs []*document, tmpl []byte) ([]byte, error) {
	p, err := findTrustParams(docs)
	if err != nil {
		return nil, err
	}
	if p.HooksImage == "" {
		for _, line := range strings.Split(string(tmpl), "\n") {
			if strings.HasPrefix(line, DefaultHooksImageKey) {
				p.HooksImage = strings.TrimSpace(strings.TrimPrefix(line, DefaultHooksImageKey))
			}
		}
	}
	rep := strings.NewReplacer(
		PlaceholderNamespace, p.Namespace, PlaceholderFullname, p.Fullname, PlaceholderRelease, p.Release,
		PlaceholderClusterIP, p.ClusterIP, PlaceholderTLSSecret, p.TLSSecret, PlaceholderHooksImage, p.HooksImage)
	return []byte(rep.Replace(string(tmpl))), nil
}

func findTrustParams(docs []*document) (TrustParams, error) {
	var p TrustParams
	var svc, deploy *document
	for _, d := range docs {
		if d.label(PartOfLabel) != "connected-registry" || d.label(ComponentLabel) != "registry" {
			continue
		}
		switch d.kind() {
		case "Service":
			svc = d
		case "Deployment":
			deploy = d
		}
	}
	if svc == nil {
		return p, ErrNoRegistryService
	}
	p.Fullname = svc.name()
	p.Namespace = svc.namespace()
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	p.Release = svc.label("app.kubernetes.io/instance")
	ip, err := svc.n().Pipe(yaml.Lookup("spec", "clusterIP"))
	if err != nil || ip == nil || yaml.GetValue(ip) == "" {
		return p, fmt.Errorf("service %s has no spec.clusterIP: trust distribution needs the fixed clusterIP", p.Fullname)
	}
	p.ClusterIP = yaml.GetValue(ip)
	p.TLSSecret = p.Fullname + "-tls"
	if deploy != nil {
		if v, _ := deploy.n().Pipe(yaml.Lookup("spec", "template", "spec", "volumes", "[name=tls]", "secret", "secretName")); v != nil {
			p.TLSSecret = yaml.GetValue(v)
		}
		if v, _ := deploy.n().Pipe(yaml.Lookup("spec", "template", "spec", "initContainers", "[name=credential-helper]", "image")); v != nil {
			p.HooksImage = yaml.GetValue(v)
		}
	}
	return p, nil
}
