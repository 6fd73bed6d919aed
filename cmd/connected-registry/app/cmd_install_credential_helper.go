package app

import (
	"context"
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
}

// AddFlags registers the flags.
func (o *InstallCredentialHelperOptions) AddFlags(fs *FlagSet) {
	fs.StringVar(&o.Dest, "dest", "CONNECTED_REGISTRY_HELPER_DEST", "",
		"path to install the credential helper at, in a directory shared with the registry container; its name must start with "+
			credhelper.NamePrefix+" (for example /helpers/docker-credential-connected-registry)")
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
	_, err = fmt.Fprintf(out, "installed the credential helper at %s (%d bytes, mode 0555)\n", o.Dest, n)
	return err
}
