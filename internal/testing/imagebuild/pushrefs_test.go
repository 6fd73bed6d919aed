package imagebuild

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"
)

func TestPushArchiveRefsLeavesOutTheOtherNames(t *testing.T) {
	t.Parallel()
	reg := newTestRegistry(t, true, "", "")
	idx := fakeIndex(t, "archive")
	path := filepath.Join(t.TempDir(), "registry.tar")
	require.NoError(t, WriteArchiveFile(path, NamedIndex{
		Refs:  []string{"docker.io/library/registry:3", "ghcr.io/connected-registry/distribution:v3.1.2"},
		Index: idx,
	}))
	c := &RegistryClient{RootCAs: reg.pool}
	var pushed []string
	keep := func(ref string) bool { return ref == "ghcr.io/connected-registry/distribution:v3.1.2" }
	err := c.PushArchiveRefs(context.Background(), path, reg.host, nil, keep,
		func(p Pushed) { pushed = append(pushed, p.Destination) })
	require.NoError(t, err)
	require.Equal(t, []string{reg.host + "/connected-registry/distribution:v3.1.2"}, pushed)
	r, err := c.Reference(reg.host + "/library/registry:3")
	require.NoError(t, err)
	_, err = remote.Head(r, c.Options(context.Background())...)
	require.Error(t, err, "the name left out must not be in the registry")
}
