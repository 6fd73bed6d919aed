package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/connected-registry/connected-registry/internal/credhelper"
)

const (
	// CredentialHelperCommand is the subcommand that acts as the credential helper.
	CredentialHelperCommand = "credential-helper"
	// CredentialHelperPrefix starts the name under which the binary acts as a Docker credential helper.
	CredentialHelperPrefix = "docker-credential-"
)

// ErrNotSupported answers the credential-helper actions that would change or list stored credentials.
var ErrNotSupported = errors.New("not supported")

// CredentialHelperOptions answers the Docker credential-helper protocol with the parent registry's
// credentials from a mounted Secret.
type CredentialHelperOptions struct {
	// CredentialsDir holds connectionString, or username and password.
	CredentialsDir string
	// Action is get, store, erase, list or version.
	Action string
	// In is where `get` reads the server URL.
	In io.Reader
}

// AddFlags registers the flags.
func (o *CredentialHelperOptions) AddFlags(fs *FlagSet) {
	fs.StringVar(&o.CredentialsDir, "credentials-dir", credhelper.EnvDir, credhelper.DefaultDir,
		"directory of the mounted Secret with the parent's credentials: a file "+credhelper.FileConnectionString+
			", or files "+credhelper.FileUsername+" and "+credhelper.FilePassword)
}

// SetArgs takes the action.
func (o *CredentialHelperOptions) SetArgs(args []string) error {
	if len(args) != 1 {
		return usageErrorf("give one action: get, store, erase, list or version (got %d arguments)", len(args))
	}
	o.Action = args[0]
	return nil
}

// Complete validates the action.
func (o *CredentialHelperOptions) Complete() error {
	switch o.Action {
	case "get", "store", "erase", "list", "version":
	default:
		return usageErrorf("unknown credential helper action %q; the registry calls get", o.Action)
	}
	if o.CredentialsDir == "" {
		return usageErrorf("--credentials-dir (%s) is empty; give the directory of the parent credentials", credhelper.EnvDir)
	}
	if o.In == nil {
		o.In = strings.NewReader("")
	}
	return nil
}

// Run answers the action.
func (o *CredentialHelperOptions) Run(_ context.Context, out io.Writer) error {
	switch o.Action {
	case "get":
		return credhelper.Get(o.CredentialsDir, o.In, out)
	case "version":
		_, err := fmt.Fprintln(out, "connected-registry credential helper")
		return err
	}
	return fmt.Errorf("%s is %w: the parent credentials come from the Secret mounted at %s, not from docker login", o.Action, ErrNotSupported, o.CredentialsDir)
}
