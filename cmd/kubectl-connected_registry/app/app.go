// Package app wires the commands of the kubectl-connected_registry plugin: one Options type per command, filled by
// flags that each have an environment twin (internal/cli), checked by Complete, run by Run. The checks themselves
// live in internal/check (after install) and internal/preflight (before, the hook's own code).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/connected-registry/connected-registry/internal/cli"
)

// Streams are the standard streams of a command.
type Streams struct {
	Out io.Writer
	Err io.Writer
}

// UsageError reports a mistake on the command line; the binary exits with status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ErrChecksFailed is returned when a check fails; its lines are already printed.
var ErrChecksFailed = errors.New("checks failed")

// Reported reports whether err's message was already printed with the checks' lines.
func Reported(err error) bool { return errors.Is(err, ErrChecksFailed) }

// ExitCode maps an error of Execute to the exit status: 0 for none (or --help), 2 for a usage error, 1 otherwise
// (a failed check among them).
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

const usage = `Usage: kubectl connected-registry check [--pre] [flags]

Check a connected-registry release, in the style of linkerd check: one line per check, ✓ passed, ‼ a warning,
× a failure with a hint. The exit status is 1 when a check fails.

  kubectl connected-registry check --pre -f site.yaml [--set k=v] [--protected-settings protected.json]
      before helm install or upgrade: the chart's preflight checks, the hook's own code, with the values the install
      will get, against the current cluster
  kubectl connected-registry check [-n connected-registry] [--release connected-registry] [-o json]
      after install: the registry is ready, its certificate, the parent, every node's trust, the pre-sync, the
      cache, the release's helm status, and the warnings recorded about the release

Flags:
`

// Execute runs the command that args (os.Args) select.
func Execute(ctx context.Context, args []string, s Streams, env cli.LookupEnv) error {
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		fmt.Fprint(s.Out, usage)
		newCheckFlags(&CheckOptions{}, env).PrintDefaults(s.Out)
		if len(args) < 2 {
			return usageErrorf("no command given: kubectl connected-registry check [--pre]")
		}
		return flag.ErrHelp
	}
	if args[1] != "check" {
		return usageErrorf("unknown command %q of %s: the command is check", args[1], filepath.Base(args[0]))
	}
	o := &CheckOptions{Err: s.Err}
	fs := newCheckFlags(o, env)
	fs.SetUsage("")
	if err := fs.Parse(args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(s.Out, usage)
			fs.PrintDefaults(s.Out)
			return err
		}
		return &UsageError{Err: fmt.Errorf("check: %w", err)}
	}
	if len(fs.Args()) > 0 {
		return usageErrorf("check takes no arguments, got %q", strings.Join(fs.Args(), " "))
	}
	if err := o.Complete(); err != nil {
		return err
	}
	return o.Run(ctx, s.Out)
}

func newCheckFlags(o *CheckOptions, env cli.LookupEnv) *cli.FlagSet {
	fs := cli.NewFlagSet("kubectl connected-registry check", env, io.Discard)
	o.AddFlags(fs)
	return fs
}
