// Package postrender is the chart's kustomize post-renderer: it applies a user's kustomize overlay (a
// kustomization directory, or patches and components named on the command line) to the chart's rendered
// output, in memory, and can turn trust distribution off or on. A *Renderer has Helm's one post-renderer
// method, Run(*bytes.Buffer) (*bytes.Buffer, error).
package postrender

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// ResourceName is the fixed name by which a user's kustomization.yaml lists the chart's output among its
// resources: `resources: [helm-output.yaml]`. No such file exists: the post-renderer serves it from memory.
const ResourceName = "helm-output.yaml"

// memRoot is the in-memory directory of the kustomization built from command-line patches and components.
const memRoot = "/.connected-registry-postrender"

// Trust is the trust-distribution switch.
type Trust string

// Values of Trust.
const (
	// TrustKeep leaves the chart's output as rendered.
	TrustKeep Trust = ""
	// TrustOff removes the node agent and every object that exists only for it.
	TrustOff Trust = "off"
	// TrustOn adds the node agent when the chart was rendered without it.
	TrustOn Trust = "on"
)

// ParseTrust parses the value of the --trust-distribution flag.
func ParseTrust(s string) (Trust, error) {
	switch Trust(s) {
	case TrustKeep, TrustOff, TrustOn:
		return Trust(s), nil
	case "keep":
		return TrustKeep, nil
	}
	return "", fmt.Errorf("trust distribution %q is not one of on, off, keep", s)
}

// Patch is a patch file named on the command line.
type Patch struct {
	// Path is the patch file: a strategic-merge patch, or a JSON 6902 patch (which needs Target).
	Path string
	// Target selects the objects to patch; nil patches the object the strategic-merge patch names.
	Target *types.Selector
}

// Options configures a Renderer.
type Options struct {
	// Dir is a kustomization directory whose kustomization lists ResourceName among its resources.
	Dir string
	// Patches are applied to the chart's output (after Dir's kustomization, when both are given).
	Patches []Patch
	// Components are kustomize component directories applied like Patches.
	Components []string
	// Trust turns trust distribution off or on.
	Trust Trust
	// FS holds Dir, Patches and Components; the disk when nil. It is only read.
	FS filesys.FileSystem
	// Warn receives warnings (for example what Helm 3 cannot do); nil discards them.
	Warn io.Writer
}

// Renderer applies an overlay to the chart's output. Its Run method is safe to call concurrently: kustomize
// is not, so calls are serialised.
type Renderer struct {
	fs        *overlayFS
	root      string
	chartDir  string
	chartFile string
	rename    map[string]string
	patches   []patchInfo
	trust     Trust
	warn      io.Writer
}

// kustomizeMu serialises kustomize runs: krusty and kyaml's OpenAPI schema hold global state.
var kustomizeMu sync.Mutex

// New checks the overlay and returns a Renderer for it.
func New(o Options) (*Renderer, error) {
	lower := o.FS
	onDisk := lower == nil
	if onDisk {
		lower = filesys.MakeFsOnDisk()
	}
	abs := func(p string) (string, error) {
		if !onDisk {
			return filepath.Clean(p), nil
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			a = r
		}
		return a, nil
	}
	r := &Renderer{fs: newOverlayFS(lower), rename: map[string]string{}, trust: o.Trust, warn: o.Warn}
	if _, err := ParseTrust(string(o.Trust)); err != nil {
		return nil, err
	}
	if o.Dir != "" {
		dir, err := abs(o.Dir)
		if err != nil {
			return nil, err
		}
		if !lower.IsDir(dir) {
			return nil, fmt.Errorf("overlay directory %s is not a directory", o.Dir)
		}
		kf, err := readKustomization(lower, dir)
		if err != nil {
			return nil, err
		}
		listed := false
		for _, res := range kf.k.Resources {
			listed = listed || filepath.Clean(res) == ResourceName
		}
		if !listed {
			return nil, fmt.Errorf("%s: %w", kf.file, ErrChartOutputNotListed)
		}
		if lower.Exists(filepath.Join(dir, ResourceName)) {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ResourceName), ErrReservedName)
		}
		r.root, r.chartDir = dir, dir
	}
	if len(o.Patches) > 0 || len(o.Components) > 0 || o.Dir == "" {
		if err := r.synthesize(o, abs); err != nil {
			return nil, err
		}
	}
	r.chartFile = filepath.Join(r.chartDir, ResourceName)
	rename := func(p string) string {
		if u, ok := r.rename[p]; ok {
			return u
		}
		return p
	}
	err := walkTree(r.fs, r.root, func(kf *kustFile, _ bool) error {
		ps, err := patchesOf(r.fs, kf, rename)
		r.patches = append(r.patches, ps...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// synthesize writes the in-memory kustomization that lists the chart's output (or Dir), the command-line
// patches (copied into memory, so kustomize's load restrictions hold) and the components.
func (r *Renderer) synthesize(o Options, abs func(string) (string, error)) error {
	k := types.Kustomization{TypeMeta: types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind}}
	if r.root == "" {
		r.chartDir = memRoot
		k.Resources = []string{ResourceName}
	} else {
		rel, err := filepath.Rel(memRoot, r.root)
		if err != nil {
			return err
		}
		k.Resources = []string{rel}
	}
	for i, p := range o.Patches {
		src, err := abs(p.Path)
		if err != nil {
			return err
		}
		data, err := r.fs.lower.ReadFile(src)
		if err != nil {
			return fmt.Errorf("reading patch %s: %w", p.Path, err)
		}
		name := fmt.Sprintf("patches/%02d-%s", i+1, filepath.Base(src))
		if err := r.fs.WriteFile(filepath.Join(memRoot, name), data); err != nil {
			return err
		}
		r.rename[filepath.Join(memRoot, name)] = p.Path
		k.Patches = append(k.Patches, types.Patch{Path: name, Target: p.Target})
	}
	for _, c := range o.Components {
		dir, err := abs(c)
		if err != nil {
			return err
		}
		if !r.fs.lower.IsDir(dir) {
			return fmt.Errorf("component %s is not a directory", c)
		}
		rel, err := filepath.Rel(memRoot, dir)
		if err != nil {
			return err
		}
		k.Components = append(k.Components, rel)
	}
	data, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	file := filepath.Join(memRoot, "kustomization.yaml")
	r.rename[file] = "the command line"
	r.root = memRoot
	return r.fs.WriteFile(file, data)
}

// Run implements Helm's post-renderer: it reads the chart's output and returns it with the overlay applied.
func (r *Renderer) Run(in *bytes.Buffer) (out *bytes.Buffer, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%w panicked: %v", ErrKustomize, p)
		}
	}()
	var data []byte
	if in != nil {
		data = in.Bytes()
	}
	var docs []*document
	split := func() ([]*document, error) {
		var err error
		if docs == nil {
			docs, err = splitDocuments(data)
		}
		return docs, err
	}
	kustomizeMu.Lock()
	defer kustomizeMu.Unlock()
	var resources []*resource.Resource
	var yamlOut []byte
	if r.trust == TrustKeep {
		// The common case: kustomize reads Helm's stream as it is.
		resources, yamlOut, err = r.buildOnce(data, split)
	} else {
		if _, err := split(); err != nil {
			return nil, err
		}
		if docs, err = r.applyTrust(docs); err != nil {
			return nil, err
		}
		resources, yamlOut, err = r.buildOnce(joinDocuments(docs), func() ([]*document, error) { return docs, nil })
	}
	if err != nil {
		return nil, err
	}
	if err := r.checkPatches(split, resources); err != nil {
		return nil, err
	}
	return bytes.NewBuffer(yamlOut), nil
}

func krustyOptions() *krusty.Options {
	o := krusty.MakeDefaultOptions()
	// What `kustomize build` does by default: the kustomization's sortOptions, else the legacy order.
	o.Reorder = krusty.ReorderOptionUnspecified
	o.LoadRestrictions = types.LoadRestrictionsRootOnly
	o.PluginConfig = types.DisabledPluginConfig()
	return o
}

// buildOnce runs kustomize over the whole input at once, as Flux's helm-controller does: the chart's output is
// tens of objects.
func (r *Renderer) buildOnce(input []byte, docs func() ([]*document, error)) ([]*resource.Resource, []byte, error) {
	fs, err := r.fs.withFile(r.chartFile, input)
	if err != nil {
		return nil, nil, err
	}
	m, err := krusty.MakeKustomizer(krustyOptions()).Run(fs, r.root)
	if err != nil {
		return nil, nil, r.explain(err, docs)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, nil, err
	}
	return m.Resources(), out, nil
}

// explain turns kustomize's error about an untargeted strategic-merge patch into one that names the patch.
func (r *Renderer) explain(err error, split func() ([]*document, error)) error {
	msg := err.Error()
	if strings.Contains(msg, "no resource matches strategic merge patch") {
		for _, p := range r.patches {
			for _, id := range p.ids {
				if !strings.Contains(msg, fmt.Sprintf("%q", id.String())) {
					continue
				}
				hint := ""
				docs, _ := split()
				for _, d := range docs {
					if d.kind() == id.Kind && d.name() == id.Name && d.namespace() != id.Namespace {
						hint = fmt.Sprintf(": the chart's %s %s is in namespace %q; set metadata.namespace: %s in the patch, or give it a target", id.Kind, id.Name, d.namespace(), d.namespace())
						break
					}
				}
				return fmt.Errorf("patch %s (target %s) %w%s", p.source, describeID(id), ErrPatchMatchesNothing, hint)
			}
		}
	}
	return fmt.Errorf("%w: %s", ErrKustomize, strings.ReplaceAll(msg, memRoot+"/", ""))
}

// checkPatches fails when a targeted patch selected nothing: kustomize skips such a patch silently. A
// patch that selects on one of the chart's mode annotations (ModeAnnotations) is one branch of a choice and may
// find nothing: the http-proxy component patches the parent gate or the registry, whichever connects to the
// parent. A deletion may find nothing to delete (the trust-distribution off component on a chart rendered without it). A patch
// counts as matched when its target selects an object of the input or of the output (a patch may delete its
// object, or select labels another component adds). A stream of Helm 4 hooks alone is exempt: Helm's
// "separate" strategy post-renders hooks apart from the templates the patches are for.
func (r *Renderer) checkPatches(docs func() ([]*document, error), out []*resource.Resource) error {
	if len(out) > 0 {
		hooksOnly := true
		for _, res := range out {
			hooksOnly = hooksOnly && res.GetAnnotations()[HelmHookAnnotation] != ""
		}
		if hooksOnly {
			return nil
		}
	}
	for _, p := range r.patches {
		if p.target == nil || p.deletes || selectsOnMode(*p.target) {
			continue
		}
		matched, err := selectsAny(*p.target, docs, out)
		if err != nil {
			return fmt.Errorf("patch %s: %w", p.source, err)
		}
		if !matched {
			return fmt.Errorf("patch %s (target %s) %w", p.source, describeSelector(*p.target), ErrPatchMatchesNothing)
		}
	}
	return nil
}
