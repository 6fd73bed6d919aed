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
	PlaceholderNamespace = "__CR_NAMESPACE__"
	PlaceholderFullname  = "__CR_FULLNAME__"
	PlaceholderRelease   = "__CR_RELEASE__"
	// PlaceholderClusterIP stands for the clusterIP as a URL or image reference holds it: in brackets when
	// it is IPv6 ([fd00::50]), as every use in the component is followed by :443.
	PlaceholderClusterIP = "__CR_CLUSTER_IP__"
	PlaceholderTLSSecret = "__CR_TLS_SECRET__"
	PlaceholderImage     = "__CR_IMAGE__"
)

// DefaultImageKey is the line of the generated component that records the chart's default image (values
// image.repository and image.tag), used when the chart's output shows no other.
const DefaultImageKey = "# default-image: "

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
		// The registry's tls-reloader waits for the agents' acknowledgement of a new CA: without agents it must
		// not name their DaemonSet, as a chart rendered with trust distribution off does not; likewise the
		// pre-install checks (a hook: Helm 4 only).
		if err := setTrustArgs(kept, ""); err != nil {
			return nil, err
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
		for _, d := range added {
			if d.kind() == "DaemonSet" {
				if err := setTrustArgs(docs, d.name()); err != nil {
					return nil, err
				}
			}
		}
		return out, nil
	}
	return docs, nil
}

// Arguments the chart renders from trustDistribution.enabled outside the trust agent's own objects.
const (
	// The registry pod's tls-reloader names the agents' DaemonSet, whose acknowledgement of a new CA it awaits.
	reloaderContainer = "tls-reloader"
	reloaderDaemonSet = "--daemonset="
	reloaderAfter     = "--bundle-configmap="
	// The pre-install checks look for nodes the agent will run on.
	preflightContainer = "preflight"
	preflightTrust     = "--trust-distribution="
)

// setTrustArgs makes the registry Deployment's tls-reloader and the preflight Job say what a chart rendered
// with trust distribution on (daemonSet set) or off (daemonSet empty) says.
func setTrustArgs(docs []*document, daemonSet string) error {
	for _, d := range docs {
		if d.label(PartOfLabel) != "connected-registry" {
			continue
		}
		var err error
		switch {
		case d.kind() == "Deployment" && d.label(ComponentLabel) == "registry":
			err = editArgs(d, reloaderContainer, func(args []*yaml.Node) []*yaml.Node {
				var kept []*yaml.Node
				after := -1
				for _, a := range args {
					if strings.HasPrefix(a.Value, reloaderDaemonSet) {
						continue
					}
					if strings.HasPrefix(a.Value, reloaderAfter) {
						after = len(kept)
					}
					kept = append(kept, a)
				}
				if daemonSet == "" {
					return kept
				}
				at := len(kept)
				if after >= 0 {
					at = after + 1
				}
				arg := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: reloaderDaemonSet + daemonSet}
				return append(kept[:at], append([]*yaml.Node{arg}, kept[at:]...)...)
			})
		case d.kind() == "Job" && d.label(ComponentLabel) == "preflight":
			err = editArgs(d, preflightContainer, func(args []*yaml.Node) []*yaml.Node {
				for _, a := range args {
					if strings.HasPrefix(a.Value, preflightTrust) {
						a.Value = fmt.Sprintf("%s%t", preflightTrust, daemonSet != "")
					}
				}
				return args
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// editArgs rewrites the args of the named container (or init container) of a workload document.
func editArgs(d *document, container string, edit func([]*yaml.Node) []*yaml.Node) error {
	changed := false
	for _, list := range []string{"initContainers", "containers"} {
		c, err := d.n().Pipe(yaml.Lookup("spec", "template", "spec", list, "[name="+container+"]"))
		if err != nil || c == nil {
			continue
		}
		args, err := c.Pipe(yaml.Lookup("args"))
		if err != nil || args == nil || args.YNode().Kind != yaml.SequenceNode {
			continue
		}
		before := strings.Join(values(args.YNode().Content), "\x00")
		args.YNode().Content = edit(args.YNode().Content)
		changed = changed || before != strings.Join(values(args.YNode().Content), "\x00")
	}
	if !changed {
		return nil
	}
	text, err := d.n().String()
	if err != nil {
		return err
	}
	d.text = []byte(text)
	return nil
}

func values(nodes []*yaml.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Value
	}
	return out
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
	Namespace, Fullname, Release, ClusterIP, TLSSecret, Image string
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
// name, release) and Deployment (TLS Secret, and the project's image from its tls-reloader).
func trustAgent(docs []*document, tmpl []byte) ([]byte, error) {
	p, err := findTrustParams(docs)
	if err != nil {
		return nil, err
	}
	if p.Image == "" {
		for _, line := range strings.Split(string(tmpl), "\n") {
			if strings.HasPrefix(line, DefaultImageKey) {
				p.Image = strings.TrimSpace(strings.TrimPrefix(line, DefaultImageKey))
			}
		}
	}
	rep := strings.NewReplacer(
		PlaceholderNamespace, p.Namespace, PlaceholderFullname, p.Fullname, PlaceholderRelease, p.Release,
		PlaceholderClusterIP, hostLiteral(p.ClusterIP), PlaceholderTLSSecret, p.TLSSecret, PlaceholderImage, p.Image)
	return []byte(rep.Replace(string(tmpl))), nil
}

// hostLiteral is ip as it stands before ":port" in a URL or an image reference: an IPv6 address in brackets.
func hostLiteral(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
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
		// The tls-reloader runs the project's image in every registry pod.
		if v, _ := deploy.n().Pipe(yaml.Lookup("spec", "template", "spec", "initContainers", "[name=tls-reloader]", "image")); v != nil {
			p.Image = yaml.GetValue(v)
		}
	}
	return p, nil
}
