package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testImage is an image (or index) the benchmark pushes to the parent and pulls back.
type testImage struct {
	label  string // "200 MB single layer"
	repo   string
	tag    string
	digest v1.Hash // of the tag's manifest or index
	size   int64   // bytes of every manifest and blob a full pull reads
	blobs  int64   // bytes of the blobs only (configs and layers)

	image v1.Image      // set for a single image
	index v1.ImageIndex // set for an index
}

func (i *testImage) byTag() string    { return i.tag }
func (i *testImage) byDigest() string { return i.digest.String() }

// seededBytes writes n pseudo-random bytes, the same for the same seed, to w.
func seededBytes(w io.Writer, n int64, seed uint64) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	r := rand.NewChaCha8(key)
	buf := make([]byte, 1<<20)
	for n > 0 {
		chunk := buf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		_, _ = r.Read(chunk)
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return nil
}

// fileLayer is a layer whose bytes are a file, uploaded as they are (the registry does not look inside).
type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
}

var _ v1.Layer = (*fileLayer)(nil)

// newFileLayer writes size seeded bytes to path and returns them as a layer.
func newFileLayer(path string, size int64, seed uint64) (*fileLayer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if err := seededBytes(bw, size, seed); err != nil {
		f.Close()
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &fileLayer{path: path, size: size, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }

func platformImage(arch string, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	// A fixed creation time keeps the digests the same from run to run.
	return mutate.ConfigFile(img, cfg)
}

// newSingleLayer builds an image of one seeded layer of size bytes, written under dir.
func newSingleLayer(dir string, size int64, seed uint64) (*testImage, error) {
	l, err := newFileLayer(filepath.Join(dir, "layer.bin"), size, seed)
	if err != nil {
		return nil, err
	}
	img, err := platformImage("amd64", l)
	if err != nil {
		return nil, err
	}
	ti := &testImage{label: fmt.Sprintf("%s single layer", humanBytes(size)), repo: "bench/single", tag: "v1", image: img}
	return ti, ti.measure()
}

// newMultiArch builds an OCI index of linux/amd64 and linux/arm64 images with two small seeded layers each.
func newMultiArch(seed uint64) (*testImage, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, arch := range []string{"amd64", "arm64"} {
		var layers []v1.Layer
		for j, size := range []int64{16 << 10, 1 << 20} {
			r, w := io.Pipe()
			go func() { w.CloseWithError(seededBytes(w, size, seed+uint64(10*i+j))) }()
			data, err := io.ReadAll(r)
			if err != nil {
				return nil, err
			}
			layers = append(layers, static.NewLayer(data, types.OCIUncompressedLayer))
		}
		img, err := platformImage(arch, layers...)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	ti := &testImage{label: "multi-arch (2 platforms × 2 layers)", repo: "bench/multi", tag: "v1", index: idx}
	return ti, ti.measure()
}

// measure fills digest and size.
func (ti *testImage) measure() error {
	var err error
	if ti.index != nil {
		if ti.digest, err = ti.index.Digest(); err != nil {
			return err
		}
		raw, err := ti.index.RawManifest()
		if err != nil {
			return err
		}
		ti.size = int64(len(raw))
		im, err := ti.index.IndexManifest()
		if err != nil {
			return err
		}
		for _, m := range im.Manifests {
			img, err := ti.index.Image(m.Digest)
			if err != nil {
				return err
			}
			n, b, err := imageBytes(img)
			if err != nil {
				return err
			}
			ti.size += n
			ti.blobs += b
		}
		return nil
	}
	if ti.digest, err = ti.image.Digest(); err != nil {
		return err
	}
	ti.size, ti.blobs, err = imageBytes(ti.image)
	return err
}

// imageBytes is what pulling img reads: its manifest, config and layers; and the blobs alone.
func imageBytes(img v1.Image) (total, blobs int64, err error) {
	raw, err := img.RawManifest()
	if err != nil {
		return 0, 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, 0, err
	}
	blobs = m.Config.Size
	for _, l := range m.Layers {
		blobs += l.Size
	}
	return int64(len(raw)) + blobs, blobs, nil
}

// writeRaw lays the image out under dir as a static file tree of the registry API paths
// (v2/<repo>/manifests/<tag|digest>, v2/<repo>/blobs/<digest>), which the raw TLS file server serves.
// Layer files are hard-linked, not copied.
func (ti *testImage) writeRaw(dir string) error {
	base := filepath.Join(dir, "v2", ti.repo)
	writeManifest := func(ref string, raw []byte) error {
		return writeFileAll(filepath.Join(base, "manifests", ref), raw)
	}
	writeImage := func(img v1.Image) error {
		raw, err := img.RawManifest()
		if err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		if err := writeManifest(d.String(), raw); err != nil {
			return err
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			return err
		}
		cn, err := img.ConfigName()
		if err != nil {
			return err
		}
		if err := writeFileAll(filepath.Join(base, "blobs", cn.String()), cfg); err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				return err
			}
			dst := filepath.Join(base, "blobs", ld.String())
			if fl, ok := l.(*fileLayer); ok {
				_ = os.Remove(dst)
				if err := os.Link(fl.path, dst); err != nil {
					return err
				}
				continue
			}
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			if err := writeFileAll(dst, data); err != nil {
				return err
			}
		}
		return nil
	}
	if ti.image != nil {
		if err := writeImage(ti.image); err != nil {
			return err
		}
		raw, err := ti.image.RawManifest()
		if err != nil {
			return err
		}
		return writeManifest(ti.tag, raw)
	}
	raw, err := ti.index.RawManifest()
	if err != nil {
		return err
	}
	if err := writeManifest(ti.tag, raw); err != nil {
		return err
	}
	if err := writeManifest(ti.digest.String(), raw); err != nil {
		return err
	}
	im, err := ti.index.IndexManifest()
	if err != nil {
		return err
	}
	for _, m := range im.Manifests {
		img, err := ti.index.Image(m.Digest)
		if err != nil {
			return err
		}
		if err := writeImage(img); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAll(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// humanBytes prints decimal units, as the "200 MB" does.
func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// blobSizes maps the digest of every manifest and blob of the images to its size.
func blobSizes(images ...*testImage) (map[string]int64, error) {
	out := map[string]int64{}
	add := func(img v1.Image) error {
		raw, err := img.RawManifest()
		if err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		out[d.String()] = int64(len(raw))
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			out[b.Digest.String()] = b.Size
		}
		return nil
	}
	for _, ti := range images {
		if ti.image != nil {
			if err := add(ti.image); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := ti.index.RawManifest()
		if err != nil {
			return nil, err
		}
		out[ti.digest.String()] = int64(len(raw))
		im, err := ti.index.IndexManifest()
		if err != nil {
			return nil, err
		}
		for _, m := range im.Manifests {
			img, err := ti.index.Image(m.Digest)
			if err != nil {
				return nil, err
			}
			if err := add(img); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// blobDigests lists every digest a registry stores as a blob for img: manifests, configs and layers.
func blobDigests(ti *testImage) ([]v1.Hash, error) {
	out := []v1.Hash{ti.digest}
	add := func(img v1.Image) error {
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		out = append(out, m.Config.Digest)
		for _, l := range m.Layers {
			out = append(out, l.Digest)
		}
		return nil
	}
	if ti.image != nil {
		return out, add(ti.image)
	}
	im, err := ti.index.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range im.Manifests {
		out = append(out, m.Digest)
		img, err := ti.index.Image(m.Digest)
		if err != nil {
			return nil, err
		}
		if err := add(img); err != nil {
			return nil, err
		}
	}
	return out, nil
}
