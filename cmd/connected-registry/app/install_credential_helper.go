package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// InstallCredentialHelperOptions copies the running binary to Dest, where the registry container runs it as
// `proxy.exec.command`. The chart's init container does this into an emptyDir shared with the registry, so the
// helper works in any registry image, with or without a shell.
type InstallCredentialHelperOptions struct {
	// Dest is the path of the helper; its base name starts with docker-credential-.
	Dest string
	// Source is the binary to copy; empty means the running executable.
	Source string
}

// AddFlags registers the flags.
func (o *InstallCredentialHelperOptions) AddFlags(fs *FlagSet) {
	fs.StringVar(&o.Dest, "dest", "CONNECTED_REGISTRY_HELPER_DEST", "",
		"path to install the credential helper at, in a directory shared with the registry container; its name must start with "+
			CredentialHelperPrefix+" (for example /helpers/docker-credential-connected-registry)")
}

// Complete checks Dest and finds the running executable.
func (o *InstallCredentialHelperOptions) Complete() error {
	if o.Dest == "" {
		return usageErrorf("--dest is required: the path the registry's proxy.exec.command names, like /helpers/docker-credential-connected-registry")
	}
	if base := filepath.Base(o.Dest); !strings.HasPrefix(base, CredentialHelperPrefix) || base == CredentialHelperPrefix {
		return usageErrorf("--dest %q must name a file starting with %s, or the copy will not act as a credential helper", o.Dest, CredentialHelperPrefix)
	}
	dest, err := filepath.Abs(o.Dest)
	if err != nil {
		return fmt.Errorf("resolving --dest %q: %w", o.Dest, err)
	}
	o.Dest = dest
	if o.Source == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the running executable to copy: %w", err)
		}
		if o.Source, err = filepath.EvalSymlinks(exe); err != nil {
			return fmt.Errorf("finding the running executable to copy: %w", err)
		}
	}
	return nil
}

// Run copies Source to a temporary file next to Dest, makes it read-only and executable (0555), and renames it
// over Dest, so the registry never runs a half-written helper.
func (o *InstallCredentialHelperOptions) Run(_ context.Context, out io.Writer) (err error) {
	src, err := os.Open(o.Source)
	if err != nil {
		return fmt.Errorf("opening the binary to install: %w", err)
	}
	defer src.Close()

	dir := filepath.Dir(o.Dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(o.Dest)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating a temporary file in %s (mount a writable volume there, shared with the registry container): %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, src)
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w", o.Source, tmp.Name(), err)
	}
	if err = tmp.Chmod(0o555); err != nil {
		return fmt.Errorf("making %s executable: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), o.Dest); err != nil {
		return fmt.Errorf("moving the credential helper into place at %s: %w", o.Dest, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		// Best effort: persist the rename. Some volume types refuse fsync on a directory.
		_ = d.Sync()
		d.Close()
	}
	_, err = fmt.Fprintf(out, "installed the credential helper at %s (%d bytes, mode 0555)\n", o.Dest, n)
	return err
}
