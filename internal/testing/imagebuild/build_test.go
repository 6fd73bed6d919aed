package imagebuild

import (
	"bytes"
	"context"
	"debug/elf"
	"io/fs"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

func TestBuildGoImage(t *testing.T) {
	t.Parallel()
	idx, dir := tinyIndex(t)
	t.Logf("built the tiny image for amd64 and arm64 in %s", tiny.took)
	im, err := idx.IndexManifest()
	require.NoError(t, err)

	t.Run("the index is OCI with one manifest per platform, in the spec's order", func(t *testing.T) {
		mt, err := idx.MediaType()
		require.NoError(t, err)
		require.Equal(t, types.OCIImageIndex, mt)
		require.Len(t, im.Manifests, 2)
		var got []string
		for _, d := range im.Manifests {
			require.Equal(t, types.OCIManifestSchema1, d.MediaType)
			require.NotNil(t, d.Platform)
			got = append(got, d.Platform.String())
		}
		require.Equal(t, []string{"linux/amd64", "linux/arm64"}, got)
		require.Equal(t, "v0.0.1", im.Annotations[LabelVersion], "labels are also index annotations")
	})

	for _, d := range im.Manifests {
		arch := d.Platform.Architecture
		img, err := idx.Image(d.Digest)
		require.NoError(t, err)

		t.Run(arch+" layer holds the binary for its architecture at the entrypoint, mode 0755", func(t *testing.T) {
			entries := layerEntries(t, img)
			i := slices.IndexFunc(entries, func(e layerEntry) bool { return e.hdr.Name == "usr/local/bin/tiny" })
			require.GreaterOrEqual(t, i, 0, "binary not in the layer")
			bin := entries[i]
			require.Equal(t, int64(0o755), bin.hdr.Mode)
			require.Equal(t, 0, bin.hdr.Uid)
			f, err := elf.NewFile(bytes.NewReader(bin.data))
			require.NoError(t, err)
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
			require.Equal(t, want, f.Machine)
			require.Nil(t, f.Section(".interp"), "a static binary has no interpreter")
		})

		t.Run(arch+" layer is sorted, epoch-dated, with the base files and the spec's files", func(t *testing.T) {
			entries := layerEntries(t, img)
			byName := map[string]layerEntry{}
			var names []string
			for _, e := range entries {
				require.True(t, e.hdr.ModTime.Equal(Epoch), "%s has time %s", e.hdr.Name, e.hdr.ModTime)
				require.Empty(t, e.hdr.Uname+e.hdr.Gname, "%s has owner names", e.hdr.Name)
				names = append(names, e.hdr.Name)
				byName[e.hdr.Name] = e
			}
			require.True(t, slices.IsSorted(names), "entries not sorted: %q", names)
			require.Contains(t, string(byName["etc/passwd"].data), "nonroot:x:65532:65532:")
			require.Contains(t, string(byName["etc/group"].data), "nonroot:x:65532:")
			require.Equal(t, int64(0o1777), byName["tmp/"].hdr.Mode)
			require.Equal(t, NonRootUID, byName["var/lib/tiny/"].hdr.Uid)
			require.Equal(t, NonRootUID, byName["home/nonroot/"].hdr.Uid)
			require.Equal(t, "a: 1\n", string(byName["etc/tiny/config.yml"].data))
			for _, parent := range []string{"usr/", "usr/local/", "usr/local/bin/", "var/", "var/lib/", "etc/tiny/"} {
				require.Contains(t, byName, parent, "parent directory missing")
			}
			require.NotContains(t, byName, "etc/ssl/certs/ca-certificates.crt", "CA certificates only when asked")
		})

		t.Run(arch+" config has the user, entrypoint, environment and platform", func(t *testing.T) {
			cfg, err := img.ConfigFile()
			require.NoError(t, err)
			require.Equal(t, "65532:65532", cfg.Config.User)
			require.Equal(t, []string{"/usr/local/bin/tiny"}, cfg.Config.Entrypoint)
			require.Equal(t, []string{"--flag"}, cfg.Config.Cmd)
			require.Equal(t, []string{DefaultPath, "TINY=1"}, cfg.Config.Env)
			require.Equal(t, SourceURL, cfg.Config.Labels[LabelSource])
			require.Equal(t, "linux", cfg.OS)
			require.Equal(t, arch, cfg.Architecture)
			require.True(t, cfg.Created.Time.Equal(Epoch))
			require.Len(t, cfg.RootFS.DiffIDs, 1)
		})
	}

	t.Run("building again gives the same digests", func(t *testing.T) {
		again, err := BuildGoImage(context.Background(), tinySpec(dir))
		require.NoError(t, err)
		want, err := idx.Digest()
		require.NoError(t, err)
		got, err := again.Digest()
		require.NoError(t, err)
		require.Equal(t, want, got)

		var a, b bytes.Buffer
		require.NoError(t, WriteArchive(&a, NamedIndex{Refs: []string{"example.com/tiny:v1"}, Index: idx}))
		require.NoError(t, WriteArchive(&b, NamedIndex{Refs: []string{"example.com/tiny:v1"}, Index: again}))
		require.True(t, bytes.Equal(a.Bytes(), b.Bytes()), "archives of the same build differ")
	})
}

func TestBuildGoImageReportsTheCompilerError(t *testing.T) {
	t.Parallel()
	dir := writeTinyModule(t)
	spec := tinySpec(dir)
	spec.Package = "./missing"
	spec.Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	_, err := BuildGoImage(context.Background(), spec)
	require.ErrorContains(t, err, "build ./missing for linux/amd64")
	require.ErrorContains(t, err, "missing")
}

func TestSpecValidation(t *testing.T) {
	t.Parallel()
	valid := func() GoImage { return GoImage{Package: "./cmd", Binary: "/cmd"} }
	tests := []struct {
		name   string
		modify func(*GoImage)
		want   string
	}{
		{"a spec without a package should fail", func(s *GoImage) { s.Package = "" }, "Package is empty"},
		{"a relative binary path should fail", func(s *GoImage) { s.Binary = "cmd" }, `Binary path "cmd" is not absolute`},
		{"an unclean binary path should fail", func(s *GoImage) { s.Binary = "/bin/../cmd" }, "is not clean"},
		{"a windows platform should fail", func(s *GoImage) { s.Platforms = []v1.Platform{{OS: "windows", Architecture: "amd64"}} }, "only linux images"},
		{"a platform listed twice should fail", func(s *GoImage) {
			s.Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "amd64"}}
		}, "listed twice"},
		{"a user name should fail", func(s *GoImage) { s.User = "nonroot" }, "not numeric"},
		{"a module and a directory together should fail", func(s *GoImage) { s.Module = "example.com/m@v1.0.0"; s.Dir = "/src" }, "both Module"},
		{"a module without a version should fail", func(s *GoImage) { s.Module = "example.com/m"; s.Package = "example.com/m/cmd" }, "not a module version"},
		{"a relative package with a module should fail", func(s *GoImage) { s.Module = "example.com/m@v1.0.0" }, "is relative"},
		{"a symlink should fail", func(s *GoImage) { s.Files = []File{{Path: "/link", Mode: fs.ModeSymlink | 0o777}} }, "only regular files and directories"},
		{"a file at the binary's path should fail", func(s *GoImage) { s.Files = []File{RegularFile("/cmd", 0o644, nil)} }, "listed twice"},
		{"an environment entry without = should fail", func(s *GoImage) { s.Env = []string{"PATH"} }, "not KEY=value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := valid()
			tc.modify(&s)
			err := s.validate()
			require.ErrorIs(t, err, ErrInvalidSpec)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("a minimal spec should pass", func(t *testing.T) {
		t.Parallel()
		s := valid()
		require.NoError(t, s.validate())
	})
}

func TestCACertificatesPEMHoldsOnlyUnconstrainedRoots(t *testing.T) {
	t.Parallel()
	data := CACertificatesPEM()
	n := strings.Count(string(data), "-----BEGIN CERTIFICATE-----")
	require.Greater(t, n, 100, "the Mozilla bundle has well over a hundred roots")
	unconstrained := 0
	for root := range bundle.Roots() {
		if root.Constraint == nil {
			unconstrained++
		}
	}
	require.Equal(t, unconstrained, n)
	s := GoImage{Package: ".", Binary: "/x", CACertificates: true}.withDefaults()
	var paths []string
	for _, f := range rootFS(s, nil) {
		paths = append(paths, f.Path)
	}
	require.Subset(t, paths, []string{"/etc/ssl", "/etc/ssl/certs", CACertificatesPath})
}
