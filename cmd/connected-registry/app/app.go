// Package app wires the commands of the connected-registry binary, the project's one in-cluster image. It holds
// the command table, one Options type per command and the flags the commands share. Flags (each with an
// environment twin) fill an Options, Complete checks and defaults it and builds what it needs (the logger, the
// API client), and Run hands the work to the domain package of internal/. Nothing here is global: Execute builds
// every flag set afresh.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/connected-registry/connected-registry/internal/credhelper"
)

// Streams are the standard streams of a command.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Options is what every command implements.
type Options interface {
	// AddFlags registers the command's flags.
	AddFlags(fs *FlagSet)
	// Complete validates the options and fills in defaults.
	Complete() error
	// Run does the work, writing its report to out.
	Run(ctx context.Context, out io.Writer) error
}

// argsSetter is implemented by commands that take positional arguments; the others refuse any.
type argsSetter interface {
	SetArgs(args []string) error
}

// Common holds what every command shares: the flags registered on every command's flag set, and what Execute
// builds from them before the command's Complete.
type Common struct {
	// Command is the command's name, such as preflight; the API client's user agent names it.
	Command string
	// LogLevel is error, warn, info or debug.
	LogLevel string
	// Log is the command's logger, on standard error, at LogLevel; the error of a line is always its "err".
	Log *slog.Logger
}

func (c *Common) addFlags(fs *FlagSet) {
	fs.StringVar(&c.LogLevel, "log-level", "CONNECTED_REGISTRY_LOG_LEVEL", "info", "log level on standard error: error, warn, info or debug")
}

// command is one subcommand of the binary.
type command struct {
	name    string
	usage   string // positional arguments, for the help text
	summary string
	new     func(s Streams, c *Common) Options
}

// CredentialHelperCommand is the subcommand that acts as the credential helper.
const CredentialHelperCommand = "credential-helper"

// commands lists the subcommands.
func commands() []command {
	return []command{
		{
			name:    "preflight",
			summary: "check the release's values and the cluster before install or upgrade, one line per check; exit 1 on a failure",
			new:     func(_ Streams, c *Common) Options { return &PreflightOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    "certgen",
			summary: "generate the registry's CA and serving certificate into kubernetes.io/tls Secrets, keeping what is still right",
			new:     func(_ Streams, c *Common) Options { return &CertgenOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    "trust-agent",
			summary: "keep the node's containerd certs.d entry for the registry equal to the mounted CA, and report whether containerd uses it",
			new:     func(_ Streams, c *Common) Options { return &TrustAgentOptions{Common: c} },
		},
		{
			name:    "tls-reloader",
			summary: "next to the registry: publish its CA to the trust bundle, and write its certificate, a renewed one once the nodes trust its CA",
			new:     func(_ Streams, c *Common) Options { return &TLSReloaderOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    RegistryProbeCommand,
			summary: "the registry container's liveness probe: fail when the registry serves an older certificate than its files hold, or has not answered for --hang-after",
			new:     func(Streams, *Common) Options { return &RegistryProbeOptions{} },
		},
		{
			name:    "trust-remove",
			summary: "remove the certs.d entry the trust agent wrote on this node, and nothing else",
			new:     func(Streams, *Common) Options { return &TrustRemoveOptions{} },
		},
		{
			name:    "cleanup",
			summary: "post-delete: remove the trust entry from every node and the Secrets Helm does not own",
			new:     func(_ Streams, c *Common) Options { return &CleanupOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    "install-credential-helper",
			summary: "copy this binary to --dest, where the registry runs it as its Docker credential helper (and, through --link, as its liveness probe)",
			new:     func(Streams, *Common) Options { return &InstallCredentialHelperOptions{} },
		},
		{
			name:    "token-server",
			summary: "issue short-lived pull tokens for the client tokens of a Secret: the registry's auth.token realm",
			new:     func(_ Streams, c *Common) Options { return &TokenServerOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    "parent-gate",
			summary: "next to the registry: its remoteurl, forwarding its reads to the parent, the parent's token endpoint and storage hosts, with bounded waits and shared blob fetches",
			new: func(_ Streams, c *Common) Options {
				return &ParentGateOptions{gatePulls: gatePulls{KubeOptions: KubeOptions{Common: c}}}
			},
		},
		{
			name:    "sync",
			summary: "make the registry hold the selected repositories, tags and platforms, fetched through it, and report what it holds in the status ConfigMap",
			new:     func(_ Streams, c *Common) Options { return &SyncOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    "evict",
			summary: "bound the cache: delete the least recently pulled images pre-sync does not keep, through the eviction Job's own registry, before its garbage collection",
			new:     func(_ Streams, c *Common) Options { return &EvictOptions{KubeOptions: KubeOptions{Common: c}} },
		},
		{
			name:    "pull-check",
			summary: "pull one image through the registry as a node does, trusting only the published CA (the chart's helm test)",
			new:     func(Streams, *Common) Options { return &PullCheckOptions{} },
		},
		{
			name:    CredentialHelperCommand,
			usage:   strings.Join(credhelper.Actions, "|"),
			summary: "act as the Docker credential helper for the parent registry (what the binary does when named " + credhelper.NamePrefix + "*)",
			new:     func(s Streams, _ *Common) Options { return &CredentialHelperOptions{In: s.In} },
		},
	}
}

// UsageError reports a mistake on the command line; the binary exits with status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error of Execute to the process exit status: 0 for none (or --help), 2 for a usage
// error, 1 otherwise.
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

// Execute runs the command that args (os.Args) select. A binary whose base name starts with
// credhelper.NamePrefix acts as the credential helper, the way Docker and Distribution call helpers:
// `docker-credential-connected-registry get`.
func Execute(ctx context.Context, args []string, s Streams, env LookupEnv) error {
	if len(args) == 0 {
		return usageErrorf("no program name in the arguments")
	}
	prog := filepath.Base(args[0])
	if strings.HasPrefix(prog, credhelper.NamePrefix) {
		return runCommand(ctx, prog, findCommand(CredentialHelperCommand), args[1:], s, env)
	}
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		printUsage(s.Out, prog)
		if len(args) < 2 {
			return usageErrorf("no command given; run %s --help for the commands", prog)
		}
		return flag.ErrHelp
	}
	c := findCommand(args[1])
	if c == nil {
		return usageErrorf("unknown command %q; run %s --help for the commands", args[1], prog)
	}
	return runCommand(ctx, prog+" "+c.name, c, args[2:], s, env)
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return &c
		}
	}
	return nil
}

func runCommand(ctx context.Context, name string, c *command, args []string, s Streams, env LookupEnv) error {
	common := &Common{Command: c.name}
	opts := c.new(s, common)
	fs := newFlagSet(name, env, io.Discard)
	common.addFlags(fs)
	opts.AddFlags(fs)
	fs.SetUsage("") // usage goes to io.Discard; --help prints it below
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(s.Out, "Usage: %s [flags] %s\n\n%s.\n\nFlags:\n", name, c.usage, capitalize(c.summary))
			fs.PrintDefaults(s.Out)
			return err
		}
		return &UsageError{Err: fmt.Errorf("%s: %w", name, err)}
	}
	if as, ok := opts.(argsSetter); ok {
		if err := as.SetArgs(fs.Args()); err != nil {
			return err
		}
	} else if len(fs.Args()) > 0 {
		return usageErrorf("%s takes no arguments, got %q", name, fs.Args())
	}
	log, err := newLogger(s.Err, common.LogLevel)
	if err != nil {
		return err
	}
	common.Log = log
	if err := opts.Complete(); err != nil {
		return err
	}
	return opts.Run(ctx, s.Out)
}

func printUsage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nThe in-cluster binary of connected-registry.\n\nCommands:\n", prog)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-27s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun %s <command> --help for the flags of a command. Every flag can also be set through the\nenvironment variable named in its help.\n", prog)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
