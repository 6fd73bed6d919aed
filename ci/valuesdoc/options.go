package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Default paths, relative to the repository root, where `go run ./ci/valuesdoc` runs.
const (
	DefaultValues = "chart/connected-registry/values.yaml"
	DefaultSchema = "chart/connected-registry/values.schema.json"
)

// ErrOutdated is returned by -check when the schema differs from what values.yaml gives.
var ErrOutdated = errors.New("values.schema.json is out of date; run `go run ./ci/valuesdoc` and commit the result")

// Options configure one run of the generator.
type Options struct {
	// ValuesPath is the values.yaml to read.
	ValuesPath string
	// SchemaPath is the values.schema.json to write or check.
	SchemaPath string
	// Check compares the generated schema with the one on disk instead of writing it.
	Check bool
}

// BindFlags registers the options' flags on fs. Each flag defaults to its environment twin, then to the chart path.
func (o *Options) BindFlags(fs *flag.FlagSet, getenv func(string) string) error {
	check := false
	if v := getenv("VALUESDOC_CHECK"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("parse VALUESDOC_CHECK=%q: %w", v, err)
		}
		check = b
	}
	or := func(env, def string) string {
		if v := getenv(env); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&o.ValuesPath, "values", or("VALUESDOC_VALUES", DefaultValues),
		"values.yaml to read (env VALUESDOC_VALUES)")
	fs.StringVar(&o.SchemaPath, "schema", or("VALUESDOC_SCHEMA", DefaultSchema),
		"values.schema.json to write (env VALUESDOC_SCHEMA)")
	fs.BoolVar(&o.Check, "check", check,
		"write nothing; exit 1 and show the difference when the schema is out of date (env VALUESDOC_CHECK)")
	return nil
}

// Complete validates the options.
func (o *Options) Complete() error {
	for name, p := range map[string]string{"-values": o.ValuesPath, "-schema": o.SchemaPath} {
		if p == "" {
			return fmt.Errorf("flag %s must not be empty", name)
		}
	}
	return nil
}

// output is one generated file.
type output struct {
	path string
	data []byte
}

// Generate builds the schema in memory.
func (o *Options) Generate() ([]output, error) {
	data, err := os.ReadFile(o.ValuesPath)
	if err != nil {
		return nil, fmt.Errorf("read values: %w", err)
	}
	values, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ValuesPath, err)
	}
	schema, err := values.Schema()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ValuesPath, err)
	}
	return []output{{o.SchemaPath, schema}}, nil
}

// Run generates the files, and writes them, or with Check reports to out how each stale file differs.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	outputs, err := o.Generate()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !o.Check {
		for _, f := range outputs {
			if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", f.path, err)
			}
		}
		return nil
	}
	var stale []string
	for _, f := range outputs {
		current, err := os.ReadFile(f.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(out, "%s: missing\n", f.path)
		case err != nil:
			return fmt.Errorf("read %s: %w", f.path, err)
		case bytes.Equal(current, f.data):
			continue
		default:
			fmt.Fprint(out, unifiedDiff(f.path+" (on disk)", f.path+" (generated)", string(current), string(f.data)))
		}
		stale = append(stale, f.path)
	}
	if len(stale) > 0 {
		return fmt.Errorf("%w: %s", ErrOutdated, strings.Join(stale, ", "))
	}
	return nil
}

// run is the whole command, minus the process: it parses args, then runs the options.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("valuesdoc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./ci/valuesdoc [-check] [flags]")
		fmt.Fprintln(stderr, "Generates the strict values.schema.json from the comments of values.yaml (helm-docs writes README.md).")
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
