package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/connected-registry/connected-registry/internal/credhelper"
)

// InstallCredentialHelperOptions copies the running binary to Dest, where the registry container runs it as
// `proxy.exec.command` (credhelper.Install). The chart's init container does this into an emptyDir shared with
// the registry, so the helper works in any registry image, with or without a shell.
type InstallCredentialHelperOptions struct {
	// Dest is the path of the helper; its base name starts with docker-credential-.
	Dest string
	// Source is the binary to copy; empty means the running executable.
	Source string
	// Link, when set, is a symbolic link to Dest under a name that runs the binary's commands rather than the
	// credential helper: the registry container's liveness probe runs `<Link> registry-probe`.
	Link string
}

// AddFlags registers the flags.
func (o *InstallCredentialHelperOptions) AddFlags(fs *FlagSet) {
	fs.StringVar(&o.Dest, "dest", "CONNECTED_REGISTRY_HELPER_DEST", "",
		"path to install the credential helper at, in a directory shared with the registry container; its name must start with "+
			credhelper.NamePrefix+" (for example /helpers/docker-credential-connected-registry)")
	fs.StringVar(&o.Link, "link", "CONNECTED_REGISTRY_HELPER_LINK", "",
		"a symbolic link to --dest in the same directory, whose name runs the binary's commands (for example /helpers/connected-registry, for the registry's liveness probe); empty makes none")
}

// Complete checks Dest and finds the running executable.
func (o *InstallCredentialHelperOptions) Complete() error {
	if o.Dest == "" {
		return usageErrorf("--dest is required: the path the registry's proxy.exec.command names, like /helpers/docker-credential-connected-registry")
	}
	if base := filepath.Base(o.Dest); !strings.HasPrefix(base, credhelper.NamePrefix) || base == credhelper.NamePrefix {
		return usageErrorf("--dest %q must name a file starting with %s, or the copy will not act as a credential helper", o.Dest, credhelper.NamePrefix)
	}
	dest, err := filepath.Abs(o.Dest)
	if err != nil {
		return fmt.Errorf("resolving --dest %q: %w", o.Dest, err)
	}
	o.Dest = dest
	if o.Link != "" {
		if filepath.Dir(o.Link) != filepath.Dir(o.Dest) && filepath.Dir(o.Link) != "." {
			return usageErrorf("--link %q must be in the directory of --dest %q", o.Link, o.Dest)
		}
		if strings.HasPrefix(filepath.Base(o.Link), credhelper.NamePrefix) {
			return usageErrorf("--link %q must not start with %s: that name acts as the credential helper", o.Link, credhelper.NamePrefix)
		}
		o.Link = filepath.Join(filepath.Dir(o.Dest), filepath.Base(o.Link))
	}
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

// Run installs the helper and says where.
func (o *InstallCredentialHelperOptions) Run(_ context.Context, out io.Writer) error {
	n, err := credhelper.Install(o.Source, o.Dest)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "installed the credential helper at %s (%d bytes, mode 0555)\n", o.Dest, n); err != nil {
		return err
	}
	if o.Link == "" {
		return nil
	}
	// Replaced, not kept: a restarted init container finds the link of its earlier run.
	if err := os.Remove(o.Link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replacing %s: %w", o.Link, err)
	}
	if err := os.Symlink(filepath.Base(o.Dest), o.Link); err != nil {
		return fmt.Errorf("linking %s to %s: %w", o.Link, o.Dest, err)
	}
	_, err = fmt.Fprintf(out, "linked %s to it, for the registry's liveness probe\n", o.Link)
	return err
}
