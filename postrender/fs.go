package postrender

import (
	iofs "io/fs"
	"path/filepath"
	"sort"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlayFS is what kustomize sees: a kyaml in-memory file system holding everything the post-renderer
// writes (the chart's output under ResourceName, the kustomization built from command-line patches and
// components, the trust-distribution component), over a read-only lower file system holding the user's
// overlay (the disk by default). Nothing is ever written to the lower file system.
type overlayFS struct {
	mem   filesys.FileSystem
	lower filesys.FileSystem
}

var _ filesys.FileSystem = (*overlayFS)(nil)

type filepathFileInfo = iofs.FileInfo

func newOverlayFS(lower filesys.FileSystem) *overlayFS {
	return &overlayFS{mem: filesys.MakeFsInMemory(), lower: lower}
}

// withFile returns a file system that shares o's layers but holds data at path, leaving o unchanged.
func (o *overlayFS) withFile(path string, data []byte) (*overlayFS, error) {
	mem := filesys.MakeFsInMemory()
	err := o.mem.Walk("/", func(p string, info filepathFileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := o.mem.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(p, b)
	})
	if err != nil {
		return nil, err
	}
	if err := mem.WriteFile(path, data); err != nil {
		return nil, err
	}
	return &overlayFS{mem: mem, lower: o.lower}, nil
}

func (o *overlayFS) inMem(path string) bool { return o.mem.Exists(path) }

func (o *overlayFS) Create(path string) (filesys.File, error) { return o.mem.Create(path) }
func (o *overlayFS) Mkdir(path string) error                  { return o.mem.Mkdir(path) }
func (o *overlayFS) MkdirAll(path string) error               { return o.mem.MkdirAll(path) }
func (o *overlayFS) RemoveAll(path string) error              { return o.mem.RemoveAll(path) }
func (o *overlayFS) WriteFile(path string, data []byte) error { return o.mem.WriteFile(path, data) }

func (o *overlayFS) Open(path string) (filesys.File, error) {
	if o.inMem(path) {
		return o.mem.Open(path)
	}
	return o.lower.Open(path)
}

func (o *overlayFS) IsDir(path string) bool { return o.mem.IsDir(path) || o.lower.IsDir(path) }

func (o *overlayFS) ReadDir(path string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, fs := range []filesys.FileSystem{o.mem, o.lower} {
		if !fs.IsDir(path) {
			continue
		}
		names, err := fs.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (o *overlayFS) CleanedAbs(path string) (filesys.ConfirmedDir, string, error) {
	if o.inMem(path) {
		return o.mem.CleanedAbs(path)
	}
	return o.lower.CleanedAbs(path)
}

func (o *overlayFS) Exists(path string) bool { return o.inMem(path) || o.lower.Exists(path) }

func (o *overlayFS) Glob(pattern string) ([]string, error) {
	a, err := o.mem.Glob(pattern)
	if err != nil {
		return nil, err
	}
	b, err := o.lower.Glob(pattern)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range append(a, b...) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (o *overlayFS) ReadFile(path string) ([]byte, error) {
	if o.inMem(path) {
		return o.mem.ReadFile(path)
	}
	return o.lower.ReadFile(path)
}

func (o *overlayFS) Walk(path string, walkFn filepath.WalkFunc) error {
	if o.mem.Exists(path) {
		if err := o.mem.Walk(path, walkFn); err != nil {
			return err
		}
	}
	if o.lower.Exists(path) {
		return o.lower.Walk(path, func(p string, info filepathFileInfo, err error) error {
			if err == nil && !info.IsDir() && o.mem.Exists(p) {
				return nil
			}
			return walkFn(p, info, err)
		})
	}
	return nil
}
