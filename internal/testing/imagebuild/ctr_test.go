package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// containerd is a throwaway containerd daemon with its own root, state and socket, the CRI plugin off.
type containerd struct {
	dir, sock string
	cmd       *exec.Cmd
}

// startContainerd starts containerd under a test directory, or skips when the machine cannot run it.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no containerd")
	}
	for _, bin := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (apt-get install -y containerd)", bin)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	// A short directory: the socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "ib-ctrd-")
	require.NoError(t, err)
	c := &containerd{dir: dir, sock: filepath.Join(dir, "containerd.sock")}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644))
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	require.NoError(t, err)
	c.cmd = exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	require.NoError(t, c.cmd.Start())
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("containerd log:\n%s", log)
			}
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.ctr(context.Background(), "version"); err == nil {
			return c
		} else if time.Now().After(deadline) {
			t.Fatalf("containerd did not start: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ctr runs ctr against the daemon in the kubelet's namespace.
func (c *containerd) ctr(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestCtrImportsTheArchive proves the archive format against a real containerd (Debian's 1.6 here): both
// references are imported with every platform, and the image runs.
func TestCtrImportsTheArchive(t *testing.T) {
	t.Parallel()
	c := startContainerd(t)
	idx, _ := tinyIndex(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	refs := []string{"example.com/imagebuild/tiny:v1", "docker.io/library/tiny:latest"}
	path := filepath.Join(t.TempDir(), "tiny.tar")
	require.NoError(t, WriteArchiveFile(path, NamedIndex{Refs: refs, Index: idx}))
	out, err := c.ctr(ctx, "images", "import", "--all-platforms", path)
	require.NoError(t, err)
	t.Logf("ctr images import --all-platforms:\n%s", out)

	listed, err := c.ctr(ctx, "images", "ls", "-q")
	require.NoError(t, err)
	require.ElementsMatch(t, refs, strings.Fields(listed))

	content, err := c.ctr(ctx, "content", "ls", "-q")
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	for _, m := range im.Manifests {
		require.Contains(t, content, m.Digest.String(), "manifest of %s not imported", m.Platform)
	}

	if _, err := exec.LookPath("runc"); err != nil {
		t.Log("runc is not installed: the imported image is not run")
		return
	}
	// Runs before containerd stops: a task left behind would keep its shim and rootfs mount.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = c.ctr(ctx, "tasks", "kill", "-s", "SIGKILL", "imagebuild-tiny")
		_, _ = c.ctr(ctx, "tasks", "rm", "-f", "imagebuild-tiny")
		_, _ = c.ctr(ctx, "containers", "rm", "imagebuild-tiny")
	})
	out, err = c.ctr(ctx, "run", "--rm", refs[0], "imagebuild-tiny")
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && strings.Contains(out, "cgroup") {
		t.Skipf("containers cannot run here: %s", out)
	}
	require.NoError(t, err)
	require.Equal(t, "tiny on "+runtime.GOARCH, strings.TrimSpace(out))
}
