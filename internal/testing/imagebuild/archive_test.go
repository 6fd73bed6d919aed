package imagebuild

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
)

// tarNames lists the entries of a tar stream.
func tarNames(t *testing.T, data []byte) []*tar.Header {
	t.Helper()
	var out []*tar.Header
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, hdr)
	}
}

func TestWriteArchive(t *testing.T) {
	t.Parallel()
	idx := fakeIndex(t, "registry")
	refs := []string{"docker.io/library/registry:3", "ghcr.io/connected-registry/distribution:v3.1.2"}
	var buf bytes.Buffer
	require.NoError(t, WriteArchive(&buf, NamedIndex{Refs: refs, Index: idx}))
	data := buf.Bytes()

	t.Run("the layout files come first, then the blobs in digest order, all epoch-dated", func(t *testing.T) {
		t.Parallel()
		var names []string
		for _, h := range tarNames(t, data) {
			require.True(t, h.ModTime.Equal(Epoch), "%s has time %s", h.Name, h.ModTime)
			names = append(names, h.Name)
		}
		require.Equal(t, []string{"oci-layout", "index.json", "blobs/", "blobs/sha256/"}, names[:4])
		blobs := names[4:]
		require.True(t, slices.IsSorted(blobs), "blobs not sorted: %q", blobs)
		// index + 2 × (manifest + config + layer)
		require.Len(t, blobs, 7)
	})

	t.Run("index.json names every reference with both annotations", func(t *testing.T) {
		t.Parallel()
		tr := tar.NewReader(bytes.NewReader(data))
		var im v1.IndexManifest
		for {
			hdr, err := tr.Next()
			require.NoError(t, err)
			if hdr.Name == "index.json" {
				require.NoError(t, json.NewDecoder(tr).Decode(&im))
				break
			}
		}
		d, err := idx.Digest()
		require.NoError(t, err)
		require.Len(t, im.Manifests, 2)
		for i, m := range im.Manifests {
			require.Equal(t, d, m.Digest)
			require.True(t, m.MediaType.IsIndex())
			require.Equal(t, refs[i], m.Annotations[AnnotationContainerdName])
			require.Equal(t, refs[i], m.Annotations[AnnotationRefName])
		}
	})

	t.Run("the archive reads back as the same index", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "registry.tar")
		require.NoError(t, WriteArchiveFile(path, NamedIndex{Refs: refs, Index: idx}))
		entries, err := ReadArchiveEntries(path)
		require.NoError(t, err)
		d, err := idx.Digest()
		require.NoError(t, err)
		require.Equal(t, []ArchiveEntry{{refs[0], d}, {refs[1], d}}, entries)

		ar, err := OpenArchive(path)
		require.NoError(t, err)
		defer ar.Close()
		got, err := ar.Index(ar.Entries[0])
		require.NoError(t, err)
		gd, err := got.Digest()
		require.NoError(t, err)
		require.Equal(t, d, gd)
		im, err := got.IndexManifest()
		require.NoError(t, err)
		for _, m := range im.Manifests {
			img, err := got.Image(m.Digest)
			require.NoError(t, err)
			require.NotEmpty(t, layerEntries(t, img), "layers readable from the archive")
		}
	})

	t.Run("a short or invalid reference is refused", func(t *testing.T) {
		t.Parallel()
		err := WriteArchive(io.Discard, NamedIndex{Refs: []string{"Not A Ref"}, Index: idx})
		require.ErrorContains(t, err, `image reference "Not A Ref"`)
		err = WriteArchive(io.Discard, NamedIndex{Index: idx})
		require.EqualError(t, err, "an image to archive has no reference")
	})
}

func TestOpenArchiveRefusesEntriesOutsideTheLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hdr  tar.Header
		want string
	}{
		{"a path escaping the directory should fail", tar.Header{Name: "../evil", Typeflag: tar.TypeReg}, "not part of an OCI image layout"},
		{"a blob with an invalid digest should fail", tar.Header{Name: "blobs/sha256/../../x", Typeflag: tar.TypeReg}, "not part of an OCI image layout"},
		{"a symlink should fail", tar.Header{Name: "index.json", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			require.NoError(t, tw.WriteHeader(&tc.hdr))
			require.NoError(t, tw.Close())
			path := filepath.Join(t.TempDir(), "evil.tar")
			require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
			_, err := OpenArchive(path)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestWriteImageList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := fakeIndex(t, "a"), fakeIndex(t, "b")
	require.NoError(t, WriteArchiveFile(filepath.Join(dir, "b.tar"), NamedIndex{Refs: []string{"example.com/b:1", "example.com/a:2"}, Index: b}))
	require.NoError(t, WriteArchiveFile(filepath.Join(dir, "a.tar"), NamedIndex{Refs: []string{"example.com/z:1"}, Index: a}))
	_, err := WriteImageList(dir)
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, ImageListName))
	require.NoError(t, err)
	ad, _ := a.Digest()
	bd, _ := b.Digest()
	want := strings.Join([]string{
		"example.com/a:2 " + bd.String() + " b.tar",
		"example.com/b:1 " + bd.String() + " b.tar",
		"example.com/z:1 " + ad.String() + " a.tar",
	}, "\n") + "\n"
	require.Equal(t, want, string(data))
}
