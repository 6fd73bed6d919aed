package postrender

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
)

// DefaultChunkSize is the number of objects of one independent part of a large input.
//
// DESIGN. kustomize's ResMap checks every object it appends against every object it holds, and recomputes
// each id from the YAML tree on every comparison; accumulating the resources, the namespace transformer and
// every strategic-merge patch each redo those appends, so one build costs O(N²) id computations (1000
// Deployments and Services: about 30 s). When the overlay only applies transformations whose result for an
// object depends on that object alone and renames nothing (namespace, labels, annotations, images, replicas,
// patches: see chunkableKeys), the output is the same whether kustomize sees the whole input or parts of it,
// except for what crosses objects:
//   - name references (a RoleBinding's subject, a webhook's Service): objects whose scalar values hold
//     another object's name stay in the same part (a union-find over names, an over-approximation);
//   - untargeted strategic-merge patches and replicas entries, which fail when their object is absent: the
//     objects they name (and their group) go into every part, and are kept from the first part only;
//   - duplicate ids, which kustomize rejects: detected over all parts, then the whole input is built once for
//     kustomize's own error;
//   - the output order: kustomize's legacy order is a total order on ids (GVK rank, then the id string), so
//     the parts are merged by it, with the GVK ranks taken from kustomize itself on one skeleton object per
//     GVK.
//
// Anything else (name prefixes, generators, replacements, other resources, FIFO order, kind List) builds the
// whole input at once. Tests compare both paths byte for byte.
const DefaultChunkSize = 50

// build runs kustomize over the documents, in parts when that gives the same result.
func (r *Renderer) build(docs []*document) ([]*resource.Resource, []byte, error) {
	whole := func() ([]*resource.Resource, []byte, error) {
		r.lastParts = 1
		return r.buildOnce(joinDocuments(docs), func() ([]*document, error) { return docs, nil })
	}
	if !r.chunkable || r.chunkSize < 0 || len(docs) <= 2*r.chunkSize {
		return whole()
	}
	parts, pinned := r.partition(docs)
	if len(parts) < 2 {
		return whole()
	}
	var all []*resource.Resource
	for i, part := range parts {
		fs, err := r.fs.withFile(r.chartFile, joinDocuments(part))
		if err != nil {
			return nil, nil, err
		}
		m, err := krusty.MakeKustomizer(krustyOptions()).Run(fs, r.root)
		if err != nil {
			return whole() // kustomize's own error, from the whole input
		}
		for _, res := range m.Resources() {
			if i > 0 && pinned[res.OrgId().Name] {
				continue
			}
			all = append(all, res)
		}
	}
	seen := make(map[string]bool, len(all))
	for _, res := range all {
		k := legacyIDString(res.CurId())
		if seen[k] {
			return whole()
		}
		seen[k] = true
	}
	if err := r.sortLegacy(all); err != nil {
		return nil, nil, err
	}
	r.lastParts = len(parts)
	var b bytes.Buffer
	for i, res := range all {
		y, err := res.AsYAML()
		if err != nil {
			return nil, nil, err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return all, b.Bytes(), nil
}

// partition splits the documents into parts of about chunkSize objects that share no name reference, and
// returns the names of the objects every part holds.
func (r *Renderer) partition(docs []*document) ([][]*document, map[string]bool) {
	parent := make([]int, len(docs))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(a, b int) {
		if ra, rb := find(a), find(b); ra != rb {
			if ra < rb {
				parent[rb] = ra
			} else {
				parent[ra] = rb
			}
		}
	}
	byName := map[string]int{}
	for i, d := range docs {
		if strings.HasSuffix(d.kind(), "List") {
			return nil, nil
		}
		n := d.name()
		if j, ok := byName[n]; ok {
			union(i, j)
		} else {
			byName[n] = i
		}
	}
	for i, d := range docs {
		scalars(d.n().YNode(), func(v string) {
			if j, ok := byName[v]; ok {
				union(i, j)
			}
		})
	}
	pinnedRoot := map[int]bool{}
	pin := func(name string) {
		if j, ok := byName[name]; ok {
			pinnedRoot[find(j)] = true
		}
	}
	for _, p := range r.patches {
		for _, id := range p.ids {
			pin(id.Name)
		}
	}
	for _, name := range r.pinned {
		pin(name)
	}
	groups := map[int][]*document{}
	var roots []int
	var pinnedDocs []*document
	pinned := map[string]bool{}
	for i, d := range docs {
		root := find(i)
		if pinnedRoot[root] {
			pinnedDocs = append(pinnedDocs, d)
			pinned[d.name()] = true
			continue
		}
		if _, ok := groups[root]; !ok {
			roots = append(roots, root)
		}
		groups[root] = append(groups[root], d)
	}
	if 2*len(pinnedDocs) > len(docs) {
		return nil, nil
	}
	var parts [][]*document
	var cur []*document
	flush := func() {
		if len(cur) == 0 {
			return
		}
		part := append(append([]*document{}, pinnedDocs...), cur...)
		sort.Slice(part, func(i, j int) bool { return part[i].index < part[j].index })
		parts = append(parts, part)
		cur = nil
	}
	for _, root := range roots {
		g := groups[root]
		if len(cur) > 0 && len(cur)+len(g) > r.chunkSize {
			flush()
		}
		cur = append(cur, g...)
	}
	flush()
	return parts, pinned
}

// legacyIDString is the string kustomize's legacy order compares objects of one GVK by.
func legacyIDString(id resid.ResId) string {
	ns, name := id.Namespace, id.Name
	if ns == "" {
		ns = "~X"
	}
	if name == "" {
		name = "~N"
	}
	return id.Gvk.String() + "|" + ns + "|" + name
}

// sortLegacy sorts objects in kustomize's legacy order (or the legacy order the root kustomization's
// sortOptions configure). The rank of each GVK comes from kustomize itself, sorting one skeleton object of
// every GVK present.
func (r *Renderer) sortLegacy(all []*resource.Resource) error {
	var gvks []resid.Gvk
	known := map[string]bool{}
	for _, res := range all {
		g := res.CurId().Gvk
		if !known[g.String()] {
			known[g.String()] = true
			gvks = append(gvks, g)
		}
	}
	var skel bytes.Buffer
	for i, g := range gvks {
		fmt.Fprintf(&skel, "---\napiVersion: %s\nkind: %s\nmetadata:\n  name: skeleton-%d\n", g.ApiVersion(), g.Kind, i)
	}
	k := map[string]any{"resources": []string{"skeleton.yaml"}}
	if r.sortOptions != nil {
		k["sortOptions"] = r.sortOptions
	}
	kdata, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	fs := filesys.MakeFsInMemory()
	if err := fs.WriteFile("/skeleton/kustomization.yaml", kdata); err != nil {
		return err
	}
	if err := fs.WriteFile("/skeleton/skeleton.yaml", skel.Bytes()); err != nil {
		return err
	}
	opts := krustyOptions()
	opts.PluginConfig.HelmConfig.Enabled = false
	m, err := krusty.MakeKustomizer(opts).Run(fs, "/skeleton")
	if err != nil {
		return fmt.Errorf("%w: ordering the output: %v", ErrKustomize, err)
	}
	rank := map[string]int{}
	for i, res := range m.Resources() {
		rank[res.CurId().Gvk.String()] = i
	}
	ids := make([]resid.ResId, len(all))
	for i, res := range all {
		ids[i] = res.CurId()
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		ga, gb := ids[idx[a]].Gvk.String(), ids[idx[b]].Gvk.String()
		if ga != gb {
			return rank[ga] < rank[gb]
		}
		return legacyIDString(ids[idx[a]]) < legacyIDString(ids[idx[b]])
	})
	sorted := make([]*resource.Resource, len(all))
	for i, j := range idx {
		sorted[i] = all[j]
	}
	copy(all, sorted)
	return nil
}
