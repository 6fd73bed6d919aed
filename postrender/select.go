package postrender

import (
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// selectsAny reports whether the selector picks any input document or output object, with the rules of
// kustomize's ResMap.Select: namespace and name match the original or the current id, then the GVK, the label
// selector and the annotation selector.
func selectsAny(sel types.Selector, docs []*document, out []*resource.Resource) (bool, error) {
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
	for _, d := range docs {
		id := d.id()
		if ok, err := match(id, id, id.Gvk, d.node); err != nil || ok {
			return ok, err
		}
	}
	for _, res := range out {
		if ok, err := match(res.OrgId(), res.CurId(), res.GetGvk(), &res.RNode); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}
