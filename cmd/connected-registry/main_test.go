package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// TestBinary builds the binary, installs it as the init container does and runs the installed copy as
// Distribution's proxy.exec does: `<helper> get`, the parent's host on stdin, the registry's environment.
func TestBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "connected-registry")
	build := exec.Command(goTool(t), "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	helpers := filepath.Join(dir, "helpers")
	require.NoError(t, os.Mkdir(helpers, 0o755))
	helper := filepath.Join(helpers, "docker-credential-connected-registry")
	out, err = exec.Command(bin, "install-credential-helper", "--dest", helper).CombinedOutput()
	require.NoError(t, err, "install-credential-helper: %s", out)
	require.Contains(t, string(out), "installed the credential helper at "+helper)
	fi, err := os.Stat(helper)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o555), fi.Mode().Perm())

	creds := filepath.Join(dir, "parent")
	require.NoError(t, os.Mkdir(creds, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(creds, "username"), []byte("puller\n"), 0o400))
	require.NoError(t, os.WriteFile(filepath.Join(creds, "password"), []byte("pull-password\n"), 0o400))

	run := func(env []string, stdin string, args ...string) (string, string, int) {
		c := exec.Command(helper, args...)
		c.Env = env
		c.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return stdout.String(), stderr.String(), code
	}

	stdout, stderr, code := run([]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS=" + creds}, "127.0.0.1:5443", "get")
	require.Equal(t, 0, code, stderr)
	require.JSONEq(t, `{"ServerURL":"127.0.0.1:5443","Username":"puller","Secret":"pull-password"}`, stdout)

	stdout, stderr, code = run([]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS=" + filepath.Join(dir, "absent")}, "127.0.0.1:5443", "get")
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	require.True(t, strings.HasPrefix(stderr, "docker-credential-connected-registry: parent credentials directory does not exist: "), stderr)

	stdout, stderr, code = run([]string{"CONNECTED_REGISTRY_PARENT_CREDENTIALS=" + creds}, "", "store")
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "store is not supported")
	require.NotContains(t, stderr, "pull-password")
}
