package credhelper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// NamePrefix starts the name under which the in-cluster binary acts as a Docker credential helper: Docker and
// Distribution run `docker-credential-<name> get`.
const NamePrefix = "docker-credential-"

// Actions of the Docker credential-helper protocol.
var Actions = []string{"get", "store", "erase", "list", "version"}

// ErrNotSupported answers the credential-helper actions that would change or list stored credentials.
var ErrNotSupported = errors.New("not supported")

// Answer answers one action of the protocol: get from the credentials in dir, version with the helper's name;
// the others are refused with ErrNotSupported, since the credentials come from a mounted Secret.
func Answer(action, dir string, in io.Reader, out io.Writer) error {
	switch action {
	case "get":
		return Get(dir, in, out)
	case "version":
		_, err := fmt.Fprintln(out, "connected-registry credential helper")
		return err
	}
	return fmt.Errorf("%s is %w: the parent credentials come from the Secret mounted at %s, not from docker login", action, ErrNotSupported, dir)
}

// Install copies the binary src to dest, where the registry container runs it as `proxy.exec.command`. It writes a
// temporary file next to dest, makes it read-only and executable (0555), and renames it over dest, so the
// registry never runs a half-written helper. It returns the number of bytes copied.
func Install(src, dest string) (n int64, err error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("opening the binary to install: %w", err)
	}
	defer in.Close()

	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("creating a temporary file in %s (mount a writable volume there, shared with the registry container): %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if n, err = io.Copy(tmp, in); err != nil {
		return 0, fmt.Errorf("copying %s to %s: %w", src, tmp.Name(), err)
	}
	if err = tmp.Chmod(0o555); err != nil {
		return 0, fmt.Errorf("making %s executable: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), dest); err != nil {
		return 0, fmt.Errorf("moving the credential helper into place at %s: %w", dest, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		// Best effort: persist the rename. Some volume types refuse fsync on a directory.
		_ = d.Sync()
		d.Close()
	}
	return n, nil
}
