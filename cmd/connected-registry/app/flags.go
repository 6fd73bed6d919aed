package app

import (
	"io"

	"github.com/connected-registry/connected-registry/internal/cli"
)

// LookupEnv reads an environment variable, as os.LookupEnv does. Tests pass a map instead.
type LookupEnv = cli.LookupEnv

// FlagSet registers the flags of one command: every flag has an environment twin, which sets the flag's value
// unless the flag is given on the command line (internal/cli, shared with the post-renderer).
type FlagSet = cli.FlagSet

func newFlagSet(name string, env LookupEnv, usageOut io.Writer) *FlagSet {
	return cli.NewFlagSet(name, env, usageOut)
}
