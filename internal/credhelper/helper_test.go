package credhelper_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/credhelper"
)

func TestInstall(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "connected-registry")
	require.NoError(t, os.WriteFile(src, []byte("#!binary\x00payload"), 0o755))

	t.Run("the binary should be copied with mode 0555", func(t *testing.T) {
		t.Parallel()
		dest := filepath.Join(t.TempDir(), "docker-credential-connected-registry")
		n, err := credhelper.Install(src, dest)
		require.NoError(t, err)
		require.Equal(t, int64(16), n)
		assertInstalled(t, dest, "#!binary\x00payload")
	})

	t.Run("an existing read-only helper should be replaced and no temporary file left", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		dest := filepath.Join(dir, "docker-credential-connected-registry")
		require.NoError(t, os.WriteFile(dest, []byte("old"), 0o555))
		_, err := credhelper.Install(src, dest)
		require.NoError(t, err)
		assertInstalled(t, dest, "#!binary\x00payload")
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1)
	})

	t.Run("a missing destination directory should fail naming it", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "helpers")
		_, err := credhelper.Install(src, filepath.Join(dir, "docker-credential-connected-registry"))
		require.ErrorContains(t, err, "creating a temporary file in "+dir+" (mount a writable volume there, shared with the registry container): ")
	})
}

func assertInstalled(t *testing.T, path, content string) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o555), fi.Mode().Perm())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, content, string(data))
}
