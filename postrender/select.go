package postrender

import (
	"strings"

	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// selectsAny reports whether the selector picks any output object or input document, with the rules of
// kustomize's ResMap.Select: namespace and name match the original or the current id, then the GVK, the label
// selector and the annotation selector. The input is read only when no output object matches.
func selectsAny(sel types.Selector, docs func() ([]*document, error), out []*resource.Resource) (bool, error) {
	sr, err := types.NewSelectorRegex(&sel)
	if err != nil {
		return false, err
	}
	match := func(org, cur resid.ResId, gvk resid.Gvk, node *yaml.RNode) (bool, error) {
		if !sr.MatchNamespace(org.EffectiveNamespace()) && !sr.MatchNamespace(cur.EffectiveNamespace()) {
			return false, nil
		}
		if !sr.MatchName(org.Name) && !sr.MatchName(cur.Name) {
			return false, nil
		}
		if !sr.MatchGvk(gvk) {
			return false, nil
		}
		if ok, err := node.MatchesLabelSelector(sel.LabelSelector); err != nil || !ok {
			return false, err
		}
		return node.MatchesAnnotationSelector(sel.AnnotationSelector)
	}
	for _, res := range out {
		if ok, err := match(res.OrgId(), res.CurId(), res.GetGvk(), &res.RNode); err != nil || ok {
			return ok, err
		}
	}
	in, err := docs()
	if err != nil {
		return false, err
	}
	for _, d := range in {
		id := d.id()
		if ok, err := match(id, id, id.Gvk, d.n()); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// ModeAnnotations are annotations the chart sets on its objects to say which variant of a workload it rendered,
// so that a component can carry one patch per variant: connected-registry.io/parent-client on the registry
// Deployment names the container that connects to the parent ("parent-gate" or "registry").
var ModeAnnotations = []string{"connected-registry.io/parent-client"}

// selectsOnMode tells whether a patch target's annotation selector names one of ModeAnnotations.
func selectsOnMode(s types.Selector) bool {
	for _, a := range ModeAnnotations {
		if strings.Contains(s.AnnotationSelector, a) {
			return true
		}
	}
	return false
}
