package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Defaults of the flags.
const (
	// DefaultOut is relative to the directory the command runs in, the repository root for `go run ./ci/k8sschema`.
	DefaultOut         = "_out/schemas"
	DefaultKubernetes  = "k8s.io/kubernetes@v1.37.2"
	DefaultCertManager = "github.com/cert-manager/cert-manager@v1.21.2"
)

// Where the inputs are inside their modules.
const (
	swaggerPath = "api/openapi-spec/swagger.json"
	crdDir      = "deploy/crds"
)

// Options configure one run of the generator.
type Options struct {
	// Out is the directory to (re)write.
	Out string
	// Kubernetes is the module version ("path@version") whose api/openapi-spec/swagger.json is converted.
	Kubernetes string
	// CertManager is the module version whose deploy/crds/*.yaml are converted.
	CertManager string
	// Verify compiles every schema as kubeconform does before writing anything.
	Verify bool

	// locate finds a module version on disk; Complete sets `go mod download -json` when nil.
	locate moduleLocator
}

// BindFlags registers the options' flags on fs. Each flag defaults to its environment twin, then to the built-in
// default.
func (o *Options) BindFlags(fs *flag.FlagSet, getenv func(string) string) error {
	or := func(env, def string) string {
		if v := getenv(env); v != "" {
			return v
		}
		return def
	}
	verify := true
	if v := getenv("K8SSCHEMA_VERIFY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("parse K8SSCHEMA_VERIFY=%q: %w", v, err)
		}
		verify = b
	}
	fs.StringVar(&o.Out, "out", or("K8SSCHEMA_OUT", DefaultOut),
		"directory to replace with the schemas, one file per apiVersion and kind (env K8SSCHEMA_OUT)")
	fs.StringVar(&o.Kubernetes, "kubernetes", or("K8SSCHEMA_KUBERNETES", DefaultKubernetes),
		"module version whose "+swaggerPath+" gives the built-in kinds, fetched with `go mod download` (env K8SSCHEMA_KUBERNETES)")
	fs.StringVar(&o.CertManager, "cert-manager", or("K8SSCHEMA_CERT_MANAGER", DefaultCertManager),
		"module version whose "+crdDir+"/*.yaml give the cert-manager kinds, fetched with `go mod download` (env K8SSCHEMA_CERT_MANAGER)")
	fs.BoolVar(&o.Verify, "verify", verify,
		"compile every schema as kubeconform does before writing (env K8SSCHEMA_VERIFY)")
	return nil
}

// Complete validates the options and fills in the module locator.
func (o *Options) Complete() error {
	if o.Out == "" {
		return errors.New("flag -out must not be empty")
	}
	for flagName, m := range map[string]string{"-kubernetes": o.Kubernetes, "-cert-manager": o.CertManager} {
		if path, version, ok := strings.Cut(m, "@"); !ok || path == "" || version == "" {
			return fmt.Errorf("flag %s=%q is not a module version such as %q", flagName, m, DefaultKubernetes)
		}
	}
	if o.locate == nil {
		o.locate = goModDownload
	}
	return nil
}

// Generate converts the inputs and returns every file of the output directory.
func (o *Options) Generate(ctx context.Context) (map[string][]byte, error) {
	dir, err := o.locate(ctx, o.Kubernetes)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, swaggerPath))
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", swaggerPath, o.Kubernetes, err)
	}
	defs, err := parseSwagger(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", o.Kubernetes, swaggerPath, err)
	}
	schemas, err := kubernetesSchemas(defs, o.Kubernetes+" "+swaggerPath)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", o.Kubernetes, swaggerPath, err)
	}

	if dir, err = o.locate(ctx, o.CertManager); err != nil {
		return nil, err
	}
	crds, err := readCRDFiles(filepath.Join(dir, crdDir))
	if err != nil {
		return nil, fmt.Errorf("read CRDs of %s: %w", o.CertManager, err)
	}
	n := len(schemas)
	for _, name := range slices.Sorted(maps.Keys(crds)) {
		source := o.CertManager + " " + crdDir + "/" + name
		s, err := crdSchemas(defs, crds[name], source)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		schemas = append(schemas, s...)
	}
	if len(schemas) == n {
		return nil, fmt.Errorf("no CustomResourceDefinition in %s of %s", crdDir, o.CertManager)
	}

	files, err := render(schemas)
	if err != nil {
		return nil, err
	}
	if o.Verify {
		if err := verify(files); err != nil {
			return nil, err
		}
	}
	return files, ctx.Err()
}

// Run generates the schemas and replaces the output directory with them.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	files, err := o.Generate(ctx)
	if err != nil {
		return err
	}
	if err := writeDir(o.Out, files); err != nil {
		return fmt.Errorf("write %s: %w", o.Out, err)
	}
	fmt.Fprintf(out, "k8sschema: wrote %d schemas to %s; validate with\n  kubeconform -strict -schema-location '%s'\n",
		len(files)-1, o.Out, filepath.Join(o.Out, SchemaLocation))
	return nil
}

// run is the whole command, minus the process: it parses args, then runs the options.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("k8sschema", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./ci/k8sschema [flags]")
		fmt.Fprintln(stderr, "Writes standalone, strict JSON schemas of the Kubernetes and cert-manager kinds for kubeconform.")
		fs.PrintDefaults()
	}
	var o Options
	if err := o.BindFlags(fs, getenv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := o.Complete(); err != nil {
		return err
	}
	return o.Run(ctx, stdout)
}
