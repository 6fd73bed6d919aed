package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/imagebuild"
)

func TestPrintsEachPlatformManifest(t *testing.T) {
	t.Parallel()
	idx := v1.ImageIndex(empty.Index)
	var want []string
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(64, 1)
		require.NoError(t, err)
		p := &v1.Platform{OS: "linux", Architecture: arch}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
		d, err := img.Digest()
		require.NoError(t, err)
		want = append(want, "ghcr.io/connected-registry/x:1 linux/"+arch+" "+d.String())
	}
	path := filepath.Join(t.TempDir(), "x.tar")
	require.NoError(t, imagebuild.WriteArchiveFile(path, imagebuild.NamedIndex{Refs: []string{"ghcr.io/connected-registry/x:1"}, Index: idx}))
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{path}, &out))
	require.Equal(t, want, strings.Split(strings.TrimSpace(out.String()), "\n"))
}

func TestRefusesAManifestWithoutPlatform(t *testing.T) {
	t.Parallel()
	img, err := random.Image(64, 1)
	require.NoError(t, err)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	path := filepath.Join(t.TempDir(), "x.tar")
	require.NoError(t, imagebuild.WriteArchiveFile(path, imagebuild.NamedIndex{Refs: []string{"ghcr.io/connected-registry/x:1"}, Index: idx}))
	require.ErrorContains(t, run(context.Background(), []string{path}, &bytes.Buffer{}), "names no platform")
}
