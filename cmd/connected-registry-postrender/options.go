package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/postrender"
)

const usage = `connected-registry-postrender applies a kustomize overlay to the chart's output (standard input) and writes
the result on standard output.

  Helm 3: helm install ... --post-renderer ./bin/connected-registry-postrender --post-renderer-args --kustomize-dir=./site
  Helm 4: helm plugin install postrender/plugin/connected-registry-postrender
          helm install ... --post-renderer connected-registry-postrender --post-renderer-args --kustomize-dir=./site

The overlay's kustomization.yaml lists the chart's output as the resource ` + postrender.ResourceName + `.

Flags:
`

// Options of the command.
type Options struct {
	// KustomizeDir is the overlay directory.
	KustomizeDir string
	// Patches are FILE or FILE@TARGET (TARGET: comma-separated group=,version=,kind=,name=,namespace=, then
	// optionally labelSelector= or annotationSelector=, which take the rest).
	Patches []string
	// Components are kustomize component directories.
	Components []string
	// Trust is on, off or keep.
	Trust string
	// ErrorsAsManifest writes a failure to standard output as a YAML document Helm cannot parse, and exits 0:
	// Helm 4 drops a failing plugin's standard error but prints the parse error with the document.
	ErrorsAsManifest bool

	renderer *postrender.Renderer
}

func run(ctx context.Context, args []string, env cli.LookupEnv, in io.Reader, out, errOut io.Writer) error {
	var o Options
	fs := cli.NewFlagSet("connected-registry-postrender", env, errOut)
	fs.StringVar(&o.KustomizeDir, "kustomize-dir", "CR_POSTRENDER_KUSTOMIZE_DIR", "",
		"kustomization directory whose kustomization.yaml lists "+postrender.ResourceName+" among its resources")
	fs.StringsVar(&o.Patches, "patch", "CR_POSTRENDER_PATCHES",
		"patch file, FILE or FILE@TARGET with TARGET like kind=Deployment,name=cr-connected-registry (a JSON 6902 patch needs one)")
	fs.StringsVar(&o.Components, "component", "CR_POSTRENDER_COMPONENTS", "kustomize component directory, for example kustomize/components/tolerations")
	fs.StringVar(&o.Trust, "trust-distribution", "CR_POSTRENDER_TRUST_DISTRIBUTION", "keep",
		"on: add the node agent to a chart rendered without it; off: remove it and every object that exists only for it; keep")
	fs.BoolVar(&o.ErrorsAsManifest, "errors-as-manifest", "CR_POSTRENDER_ERRORS_AS_MANIFEST", false,
		"on failure, write the reason to standard output as a YAML document Helm 4 prints, and exit 0 (the Helm 4 plugin sets it)")
	fs.SetUsage(usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, ok := env("GOGC"); !ok {
		// One short-lived run over a large input: collecting less often saves a third of its CPU time.
		debug.SetGCPercent(400)
	}
	err := o.Complete(fs.Args(), errOut)
	if err == nil {
		err = o.Run(ctx, in, out)
	}
	if err != nil {
		fmt.Fprintln(errOut, "connected-registry-postrender:", err)
		if o.ErrorsAsManifest {
			return writeErrorManifest(out, err)
		}
	}
	return err
}

// Complete checks the options and builds the renderer.
func (o *Options) Complete(args []string, warn io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q: give the overlay with --kustomize-dir, --patch or --component", args)
	}
	trust, err := postrender.ParseTrust(o.Trust)
	if err != nil {
		return err
	}
	po := postrender.Options{Dir: o.KustomizeDir, Components: o.Components, Trust: trust, Warn: warn}
	for _, p := range o.Patches {
		patch, err := parsePatch(p)
		if err != nil {
			return err
		}
		po.Patches = append(po.Patches, patch)
	}
	o.renderer, err = postrender.New(po)
	return err
}

// Run post-renders standard input to standard output.
func (o *Options) Run(_ context.Context, in io.Reader, out io.Writer) error {
	var b bytes.Buffer
	if _, err := b.ReadFrom(in); err != nil {
		return fmt.Errorf("reading the chart's output: %w", err)
	}
	res, err := o.renderer.Run(&b)
	if err != nil {
		return err
	}
	_, err = res.WriteTo(out)
	return err
}

// parsePatch parses FILE or FILE@TARGET.
func parsePatch(s string) (postrender.Patch, error) {
	at := strings.LastIndex(s, "@")
	if at < 0 || !strings.Contains(s[at+1:], "=") {
		return postrender.Patch{Path: s}, nil
	}
	p := postrender.Patch{Path: s[:at], Target: &types.Selector{}}
	rest := s[at+1:]
	for rest != "" {
		kv := rest
		if !strings.HasPrefix(rest, "labelSelector=") && !strings.HasPrefix(rest, "annotationSelector=") {
			if i := strings.IndexByte(rest, ','); i >= 0 {
				kv, rest = rest[:i], rest[i+1:]
			} else {
				rest = ""
			}
		} else {
			rest = ""
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, fmt.Errorf("patch target %q of %s: %q is not key=value", s[at+1:], p.Path, kv)
		}
		switch k {
		case "group":
			p.Target.Group = v
		case "version":
			p.Target.Version = v
		case "kind":
			p.Target.Kind = v
		case "name":
			p.Target.Name = v
		case "namespace":
			p.Target.Namespace = v
		case "labelSelector":
			p.Target.LabelSelector = v
		case "annotationSelector":
			p.Target.AnnotationSelector = v
		default:
			return p, fmt.Errorf("patch target %q of %s: unknown key %q (group, version, kind, name, namespace, labelSelector, annotationSelector)", s[at+1:], p.Path, k)
		}
	}
	return p, nil
}

// writeErrorManifest writes err as a YAML document that is a block scalar, not a mapping: Helm 4 fails to read
// it as a Kubernetes object and prints it, so the reason reaches the user although Helm drops standard error.
func writeErrorManifest(out io.Writer, err error) error {
	var b strings.Builder
	b.WriteString("--- |\n  connected-registry-postrender failed:\n")
	for _, line := range strings.Split(err.Error(), "\n") {
		b.WriteString("  " + line + "\n")
	}
	if _, werr := io.WriteString(out, b.String()); werr != nil {
		return errors.Join(err, werr)
	}
	return nil
}
