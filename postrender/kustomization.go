package postrender

import (
	"fmt"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"
)

// kustFile is one kustomization (or component) of the tree kustomize will build.
type kustFile struct {
	dir  string
	file string
	k    types.Kustomization
}

func readKustomization(fs filesys.FileSystem, dir string) (*kustFile, error) {
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		p := filepath.Join(dir, name)
		if !fs.Exists(p) || fs.IsDir(p) {
			continue
		}
		data, err := fs.ReadFile(p)
		if err != nil {
			return nil, err
		}
		kf := &kustFile{dir: dir, file: p}
		if err := yaml.Unmarshal(data, &kf.k); err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		kf.k.FixKustomization()
		return kf, nil
	}
	return nil, fmt.Errorf("%w in %s (looked for %s)", ErrNoKustomization, dir, strings.Join(konfig.RecognizedKustomizationFileNames(), ", "))
}

// isRemote reports whether a resource or component entry is a URL rather than a path.
func isRemote(entry string) bool {
	return strings.Contains(entry, "://") || strings.HasPrefix(entry, "github.com/") || strings.HasPrefix(entry, "git@")
}

// walkTree visits the kustomization in dir, then every local directory it lists as a resource or component,
// depth first, each once.
func walkTree(fs filesys.FileSystem, dir string, visit func(kf *kustFile, component bool) error) error {
	seen := map[string]bool{}
	var walk func(dir string, component bool) error
	walk = func(dir string, component bool) error {
		if seen[dir] {
			return nil
		}
		seen[dir] = true
		kf, err := readKustomization(fs, dir)
		if err != nil {
			return err
		}
		if err := visit(kf, component); err != nil {
			return err
		}
		for _, r := range kf.k.Resources {
			if isRemote(r) {
				continue
			}
			p := filepath.Join(dir, r)
			if fs.IsDir(p) {
				if err := walk(p, false); err != nil {
					return err
				}
			}
		}
		for _, c := range kf.k.Components {
			if isRemote(c) {
				continue
			}
			if err := walk(filepath.Join(dir, c), true); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(dir, false)
}

// patchInfo is one entry of a kustomization's patches, as the error messages name it.
type patchInfo struct {
	// source names the patch: its file, or the inline patch and the kustomization holding it.
	source string
	target *types.Selector
	// ids are the objects an untargeted strategic-merge patch names.
	ids []resid.ResId
	// deletes: a `$patch: delete` patch, which may find its objects already gone.
	deletes bool
}

func (p patchInfo) describeTarget() string {
	if p.target == nil {
		var s []string
		for _, id := range p.ids {
			s = append(s, describeID(id))
		}
		return strings.Join(s, ", ")
	}
	return describeSelector(*p.target)
}

func describeID(id resid.ResId) string {
	s := "kind=" + id.Kind + ",name=" + id.Name
	if id.Namespace != "" {
		s += ",namespace=" + id.Namespace
	}
	return s
}

func describeSelector(t types.Selector) string {
	var s []string
	add := func(k, v string) {
		if v != "" {
			s = append(s, k+"="+v)
		}
	}
	add("group", t.Group)
	add("version", t.Version)
	add("kind", t.Kind)
	add("name", t.Name)
	add("namespace", t.Namespace)
	add("labelSelector", t.LabelSelector)
	add("annotationSelector", t.AnnotationSelector)
	if len(s) == 0 {
		return "every object"
	}
	return strings.Join(s, ",")
}

// patchesOf lists the patches of one kustomization; rename maps in-memory paths to the paths the user gave.
func patchesOf(fs filesys.FileSystem, kf *kustFile, rename func(string) string) ([]patchInfo, error) {
	var out []patchInfo
	for i, p := range kf.k.Patches {
		info := patchInfo{target: p.Target}
		text := p.Patch
		if p.Path != "" {
			full := filepath.Join(kf.dir, p.Path)
			info.source = rename(full)
			data, err := fs.ReadFile(full)
			if err != nil {
				return nil, fmt.Errorf("reading patch %s of %s: %w", p.Path, rename(kf.file), err)
			}
			text = string(data)
		} else {
			info.source = fmt.Sprintf("inline patch #%d of %s", i+1, rename(kf.file))
		}
		info.deletes = strings.Contains(text, "$patch: delete")
		if p.Target == nil {
			ids, err := smpIDs(text)
			if err != nil {
				return nil, fmt.Errorf("patch %s: %w", info.source, err)
			}
			info.ids = ids
		}
		out = append(out, info)
	}
	return out, nil
}

// smpIDs returns the objects the documents of a strategic-merge patch name. A JSON 6902 patch has none.
func smpIDs(text string) ([]resid.ResId, error) {
	t := strings.TrimSpace(text)
	if strings.HasPrefix(t, "[") {
		return nil, nil
	}
	nodes, err := kyaml.Parse(t)
	if err != nil || nodes == nil || nodes.YNode().Kind != kyaml.MappingNode {
		// a JSON 6902 patch written as a YAML list, or something kustomize will reject with its own message
		return nil, nil //nolint:nilerr
	}
	docs, err := splitDocuments([]byte(text))
	if err != nil {
		return nil, nil //nolint:nilerr
	}
	var ids []resid.ResId
	for _, d := range docs {
		ids = append(ids, d.id())
	}
	return ids, nil
}
