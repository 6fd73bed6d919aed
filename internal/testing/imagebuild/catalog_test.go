package imagebuild

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProjectImages(t *testing.T) {
	t.Parallel()
	root, err := FindRepoRoot(".")
	require.NoError(t, err)
	appVersion, err := ChartAppVersion(root)
	require.NoError(t, err)
	images, err := ProjectImages(root, "", nil)
	require.NoError(t, err)
	byName := map[string]Image{}
	for _, img := range images {
		require.NoError(t, img.Spec.validate(), img.Name)
		byName[img.Name] = img
	}

	t.Run("the connected-registry image is tagged with the chart's appVersion, runs /connected-registry and runs as nonroot", func(t *testing.T) {
		t.Parallel()
		product := byName["connected-registry"]
		require.Equal(t, []string{"ghcr.io/connected-registry/connected-registry:" + appVersion}, product.Refs)
		s := product.Spec.withDefaults()
		require.Equal(t, []string{"/connected-registry"}, s.Entrypoint)
		require.Equal(t, NonRootUser, s.User)
		require.Equal(t, appVersion, s.Labels[LabelVersion])
		require.DirExists(t, filepath.Join(root, "cmd", "connected-registry"))
	})

	t.Run("the registry image is named as the chart names it, and as the official image", func(t *testing.T) {
		t.Parallel()
		reg := byName["registry"]
		require.Equal(t, []string{"ghcr.io/connected-registry/distribution:v3.1.2", "docker.io/library/registry:3"}, reg.Refs)
		s := reg.Spec.withDefaults()
		require.Equal(t, []string{"/bin/registry"}, s.Entrypoint)
		require.Equal(t, []string{"serve", "/etc/distribution/config.yml"}, s.Cmd)
		require.Equal(t, NonRootUser, s.User)
		require.Contains(t, s.Env, "OTEL_TRACES_EXPORTER=none")
		files := map[string]File{}
		for _, f := range rootFS(s, nil) {
			files[f.Path] = f
		}
		require.True(t, files["/var/lib/registry"].Mode.IsDir())
		require.Equal(t, NonRootUID, files["/var/lib/registry"].UID, "the storage directory belongs to the registry's user")
		require.True(t, files["/etc/distribution"].Mode.IsDir())
		require.Equal(t, DistributionDefaultConfig, string(files[DistributionConfigPath].Data))
		require.Contains(t, files, CACertificatesPath, "a pull-through cache needs the system roots")
	})

	t.Run("the hello image is built from ci/images/hello", func(t *testing.T) {
		t.Parallel()
		hello := byName["hello"]
		require.Equal(t, []string{HelloRef}, hello.Refs)
		require.FileExists(t, filepath.Join(root, "ci", "images", "hello", "main.go"))
	})

	t.Run("an explicit version tags the connected-registry image", func(t *testing.T) {
		t.Parallel()
		images, err := ProjectImages(root, "1.2.3-rc.1", nil)
		require.NoError(t, err)
		require.Equal(t, []string{Repository + ":1.2.3-rc.1"}, images[0].Refs)
	})
}

func TestChartAppVersionErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := ChartAppVersion(dir)
	require.ErrorContains(t, err, "read the chart's appVersion")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "chart", "connected-registry"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(ChartPath)), []byte("name: x\nversion: 0.1.0\n"), 0o644))
	_, err = ChartAppVersion(dir)
	require.ErrorContains(t, err, "has no appVersion")
}

func TestFindRepoRootOutsideTheRepository(t *testing.T) {
	t.Parallel()
	_, err := FindRepoRoot(t.TempDir())
	require.ErrorIs(t, err, ErrNoRepoRoot)
}
