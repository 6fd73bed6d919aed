package imagebuild

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
)

// tinyMain is the program the build tests compile: it prints its architecture, as ci/images/hello does.
const tinyMain = `package main

import (
	"fmt"
	"runtime"
)

func main() { fmt.Println("tiny on " + runtime.GOARCH) }
`

// tinySpec returns the spec of an image of tinyMain in dir.
func tinySpec(dir string) GoImage {
	return GoImage{
		Package:   ".",
		Dir:       dir,
		Binary:    "/usr/local/bin/tiny",
		Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}},
		Cmd:       []string{"--flag"},
		Env:       []string{"TINY=1"},
		Labels:    map[string]string{LabelSource: SourceURL, LabelVersion: "v0.0.1"},
		Files: []File{
			Dir("/var/lib/tiny", 0o755, NonRootUID, NonRootUID),
			RegularFile("/etc/tiny/config.yml", 0o644, []byte("a: 1\n")),
		},
	}
}

// writeTinyModule writes tinyMain as the main package of a new module in a new directory.
func writeTinyModule(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, writeTinyModuleIn(dir))
	return dir
}

func writeTinyModuleIn(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/tiny\n\ngo 1.26.0\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), []byte(tinyMain), 0o644)
}

var tiny struct {
	once sync.Once
	dir  string
	idx  v1.ImageIndex
	err  error
	took time.Duration
}

// tinyIndex builds the tiny image once per test binary: cross-compiling is the slow part of these tests. Its
// module directory outlives the test that first asks for it.
func tinyIndex(t *testing.T) (v1.ImageIndex, string) {
	t.Helper()
	tiny.once.Do(func() {
		dir, err := os.MkdirTemp("", "imagebuild-tiny-")
		if err != nil {
			tiny.err = err
			return
		}
		tiny.dir = dir
		if tiny.err = writeTinyModuleIn(dir); tiny.err != nil {
			return
		}
		start := time.Now()
		tiny.idx, tiny.err = BuildGoImage(context.Background(), tinySpec(dir))
		tiny.took = time.Since(start)
	})
	require.NoError(t, tiny.err)
	return tiny.idx, tiny.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tiny.dir != "" {
		os.RemoveAll(tiny.dir)
	}
	os.Exit(code)
}

// fakeIndex is an index of two platforms whose "binaries" are a few bytes: for archive and push tests, which
// need our image layout but no compiler.
func fakeIndex(t testing.TB, payload string) v1.ImageIndex {
	t.Helper()
	s := GoImage{Package: "example.com/fake", Binary: "/fake", Labels: map[string]string{LabelVersion: payload}}.withDefaults()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range s.Platforms {
		img, err := platformImage(s, p, []byte(payload+" for "+p.Architecture))
		require.NoError(t, err)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture}},
		})
	}
	return idx
}

// layerEntry is one tar entry of a layer, with its content.
type layerEntry struct {
	hdr  *tar.Header
	data []byte
}

// layerEntries returns the entries of the image's only layer, in order.
func layerEntries(t *testing.T, img v1.Image) []layerEntry {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1, "an image on an empty base has exactly one layer")
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	var out []layerEntry
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, layerEntry{hdr: hdr, data: data})
	}
}
