package app

import (
	"context"
	"io"
	"slices"
	"strings"

	"github.com/connected-registry/connected-registry/internal/credhelper"
)

// CredentialHelperOptions answers the Docker credential-helper protocol with the parent registry's
// credentials from a mounted Secret (package credhelper).
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
	if !slices.Contains(credhelper.Actions, o.Action) {
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
	return credhelper.Answer(o.Action, o.CredentialsDir, o.In, out)
}
