package imagebuild

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations of index.json entries that name an image. containerd (ctr images import, nerdctl load) reads
// AnnotationContainerdName first, then AnnotationRefName; we set both to the full reference.
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// NamedIndex is an image index and the references it is known by, such as
// "ghcr.io/connected-registry/connected-registry:0.1.0".
type NamedIndex struct {
	Refs  []string
	Index v1.ImageIndex
}

// ociLayoutFile is the content of the layout's oci-layout file.
var ociLayoutFile = []byte(`{"imageLayoutVersion":"1.0.0"}`)

// blob is one file of blobs/sha256.
type blob struct {
	size int64
	open func() (io.ReadCloser, error)
}

// WriteArchive writes the images as an OCI image layout in a tar stream: oci-layout, index.json (one entry per
// reference, annotated with the reference), then every blob once, in digest order, with fixed times and
// owners. The same images give the same bytes. It is what `ctr images import --all-platforms` reads.
func WriteArchive(w io.Writer, images ...NamedIndex) error {
	var (
		top   v1.IndexManifest
		blobs = map[v1.Hash]blob{}
	)
	top.SchemaVersion = 2
	top.MediaType = types.OCIImageIndex
	for _, img := range images {
		if len(img.Refs) == 0 {
			return errors.New("an image to archive has no reference")
		}
		desc, err := partial.Descriptor(img.Index)
		if err != nil {
			return err
		}
		for _, ref := range img.Refs {
			if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
				return fmt.Errorf("image reference %q: %w", ref, err)
			}
			d := *desc
			d.Annotations = map[string]string{AnnotationContainerdName: ref, AnnotationRefName: ref}
			top.Manifests = append(top.Manifests, d)
		}
		if err := collectIndex(img.Index, blobs); err != nil {
			return fmt.Errorf("archive %s: %w", strings.Join(img.Refs, ", "), err)
		}
	}
	indexJSON, err := json.Marshal(top)
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	for _, f := range []struct {
		name string
		data []byte
	}{{"oci-layout", ociLayoutFile}, {"index.json", indexJSON}} {
		if err := writeTarFile(tw, f.name, int64(len(f.data)), bytes.NewReader(f.data)); err != nil {
			return err
		}
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: Epoch}); err != nil {
			return err
		}
	}
	digests := slices.SortedFunc(maps.Keys(blobs), func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
	for _, h := range digests {
		b := blobs[h]
		rc, err := b.open()
		if err != nil {
			return fmt.Errorf("blob %s: %w", h, err)
		}
		err = writeTarFile(tw, "blobs/"+h.Algorithm+"/"+h.Hex, b.size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("blob %s: %w", h, err)
		}
	}
	return tw.Close()
}

func writeTarFile(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: Epoch}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: wrote %d bytes, want %d", name, n, size)
	}
	return nil
}

// rawBlob returns a blob of bytes already in memory.
func rawBlob(data []byte) blob {
	return blob{
		size: int64(len(data)),
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	}
}

// collectIndex adds the index, and everything it refers to, to blobs.
func collectIndex(idx v1.ImageIndex, blobs map[v1.Hash]blob) error {
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	blobs[d] = rawBlob(raw)
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range im.Manifests {
		switch {
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return err
			}
			if err := collectIndex(child, blobs); err != nil {
				return err
			}
		case desc.MediaType.IsImage():
			img, err := idx.Image(desc.Digest)
			if err != nil {
				return err
			}
			if err := collectImage(img, blobs); err != nil {
				return err
			}
		default:
			return fmt.Errorf("manifest %s has media type %s, neither an image nor an index", desc.Digest, desc.MediaType)
		}
	}
	return nil
}

// collectImage adds the image's manifest, config and layers to blobs.
func collectImage(img v1.Image, blobs map[v1.Hash]blob) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	blobs[d] = rawBlob(raw)
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return err
	}
	blobs[cd] = rawBlob(cfg)
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		blobs[ld] = blob{size: size, open: l.Compressed}
	}
	return nil
}

// WriteArchiveFile writes the archive to path through a temporary file in the same directory, so a reader never
// sees a partial archive.
func WriteArchiveFile(path string, images ...NamedIndex) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := WriteArchive(f, images...); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ArchiveEntry is one reference of an archive's index.json.
type ArchiveEntry struct {
	Ref    string
	Digest v1.Hash
}

// ReadArchiveEntries returns the references and digests of an archive's index.json, in order, without reading
// its blobs.
func ReadArchiveEntries(path string) ([]ArchiveEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: no index.json: not an OCI layout archive", path)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if cleanArchiveName(hdr.Name) != "index.json" {
			continue
		}
		im, err := v1.ParseIndexManifest(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: index.json: %w", path, err)
		}
		return archiveEntries(path, im)
	}
}

func archiveEntries(path string, im *v1.IndexManifest) ([]ArchiveEntry, error) {
	var out []ArchiveEntry
	for _, d := range im.Manifests {
		ref := d.Annotations[AnnotationContainerdName]
		if ref == "" {
			ref = d.Annotations[AnnotationRefName]
		}
		if ref == "" {
			return nil, fmt.Errorf("%s: index.json entry %s has no %s or %s annotation", path, d.Digest,
				AnnotationContainerdName, AnnotationRefName)
		}
		out = append(out, ArchiveEntry{Ref: ref, Digest: d.Digest})
	}
	return out, nil
}

// ArchiveReader gives access to the images of an archive extracted into a temporary directory.
type ArchiveReader struct {
	dir     string
	Entries []ArchiveEntry
	layout  layout.Path
}

// OpenArchive extracts an archive written by WriteArchive (or any OCI layout tar with named entries) into a
// temporary directory. Close removes it.
func OpenArchive(path string) (*ArchiveReader, error) {
	dir, err := os.MkdirTemp("", "imagebuild-archive-")
	if err != nil {
		return nil, err
	}
	ar := &ArchiveReader{dir: dir}
	if err := extractLayout(path, dir); err != nil {
		ar.Close()
		return nil, err
	}
	if ar.layout, err = layout.FromPath(dir); err != nil {
		ar.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	top, err := ar.layout.ImageIndex()
	if err != nil {
		ar.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		ar.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ar.Entries, err = archiveEntries(path, im); err != nil {
		ar.Close()
		return nil, err
	}
	return ar, nil
}

// Index returns the image index the entry names. Entries naming a single image are not supported.
func (ar *ArchiveReader) Index(e ArchiveEntry) (v1.ImageIndex, error) {
	top, err := ar.layout.ImageIndex()
	if err != nil {
		return nil, err
	}
	idx, err := top.ImageIndex(e.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", e.Ref, e.Digest, err)
	}
	return idx, nil
}

// Close removes the extracted files.
func (ar *ArchiveReader) Close() error {
	return os.RemoveAll(ar.dir)
}

// cleanArchiveName returns a tar entry's name without "./" and trailing slashes.
func cleanArchiveName(n string) string {
	return strings.TrimSuffix(strings.TrimPrefix(n, "./"), "/")
}

// extractLayout extracts oci-layout, index.json and blobs/<alg>/<hex> from a tar, refusing anything else that
// is not a directory, so a crafted archive cannot write outside dir.
func extractLayout(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		n := cleanArchiveName(hdr.Name)
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("%s: entry %q is not a regular file", path, hdr.Name)
		}
		if !validLayoutName(n) {
			return fmt.Errorf("%s: entry %q is not part of an OCI image layout", path, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyToFile(dst, tr); err != nil {
			return fmt.Errorf("%s: extract %s: %w", path, n, err)
		}
	}
}

func validLayoutName(n string) bool {
	if n == "oci-layout" || n == "index.json" {
		return true
	}
	parts := strings.Split(n, "/")
	if len(parts) != 3 || parts[0] != "blobs" {
		return false
	}
	_, err := v1.NewHash(parts[1] + ":" + parts[2])
	return err == nil
}

func copyToFile(dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
