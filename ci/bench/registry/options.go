package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

const usage = `usage: registry-bench [flags]

Measures pulls through the connected registry (Distribution v3.1.2 running the configuration the chart
renders) against a raw TLS file server and direct pulls from the parent, on 127.0.0.1, and writes a markdown
report. Every flag has a BENCH_* environment twin (--layer-size: BENCH_LAYER_SIZE).

`

// Options of one benchmark run.
type Options struct {
	// Out is the markdown report; "-" prints it.
	Out string
	// Dir is the working directory (registries' storage, the layer file); empty makes and removes a
	// temporary one.
	Dir string
	// Runs is how often every measurement repeats.
	Runs int
	// LayerSize is the size in bytes of the single-layer image's layer.
	LayerSize int64
	// UplinkRate is the rate, in bytes per second, of the thin uplink the uplink section puts between the site
	// and its parent.
	UplinkRate int
	// ColdClients and WarmClients are the client counts of the concurrency benchmarks.
	ColdClients, WarmClients []int
	// Sections selects what runs: single, cold, warm, outage.
	Sections []string
	// StorageClients is the client count of the storage section's concurrent cold pull; StorageLayers and
	// StorageLayerSize are the count and size of its image's large layers.
	StorageClients, StorageLayers int
	StorageLayerSize              int64
	// Proto is the HTTP version the pulling clients offer.
	Proto clientProto
	// RegistryBin is Distribution's binary; empty uses $REGISTRY_BIN or bin/registry.
	RegistryBin string
	// PullTimeout bounds one pull; OutageTimeout bounds one pull while the parent is down.
	PullTimeout, OutageTimeout time.Duration
	// Variants are the chart values the connected registry runs with in the single-pull benchmark, "before"
	// first; the warm concurrency benchmark uses the last. ColdVariants are those of the concurrent cold-pull
	// benchmark, OutageVariants those of the outage benchmark.
	Variants, ColdVariants, OutageVariants []variant

	extraVariants, extraOutage stringList
	keepDir                    bool
	log                        io.Writer
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// BindFlags binds the flags and their environment twins.
func (o *Options) BindFlags(fs *flag.FlagSet, getenv func(string) string) {
	def := func(name, fallback string) string {
		if v := getenv("BENCH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&o.Out, "out", def("out", filepath.Join(chartrender.RepoRoot(), "_out", "bench", "registry.md")), "markdown report to write; - prints it")
	fs.StringVar(&o.Dir, "dir", def("dir", ""), "working directory (registry storage, the layer file); empty: a temporary directory, removed afterwards")
	fs.Func("runs", "repetitions of every measurement (default 5)", intFlag(&o.Runs))
	fs.Func("layer-size", "bytes of the single-layer image's layer (default 200000000)", int64Flag(&o.LayerSize))
	fs.Func("cold-clients", "client counts of the concurrent cold-pull benchmark (default 10,50)", intsFlag(&o.ColdClients))
	fs.Func("warm-clients", "client counts of the warm-cache concurrency benchmark (default 1,10,50)", intsFlag(&o.WarmClients))
	fs.Func("uplink-rate", "bytes per second of the uplink to the parent in the uplink and storage sections (default 50000000)", intFlag(&o.UplinkRate))
	fs.Func("sections", "what to run: single,cold,warm,outage,uplink,token (default all); storage runs alone (make bench-storage)", func(s string) error { o.Sections = splitList(s); return nil })
	fs.Func("storage-clients", "clients of the storage section's concurrent cold pull (default 8)", intFlag(&o.StorageClients))
	fs.Func("storage-layers", "large layers of the storage section's image (default 3)", intFlag(&o.StorageLayers))
	fs.Func("storage-layer-size", "bytes of each large layer of the storage section's image (default 64000000)", int64Flag(&o.StorageLayerSize))
	fs.Func("proto", "HTTP version the clients offer: http1 or http2 (default http1, as containerd)", func(s string) error {
		switch s {
		case "http1":
			o.Proto = http1
		case "http2":
			o.Proto = http2
		default:
			return fmt.Errorf("proto %q: want http1 or http2", s)
		}
		return nil
	})
	fs.StringVar(&o.RegistryBin, "registry-bin", def("registry-bin", ""), "Distribution v3.1.2 registry binary; empty: $REGISTRY_BIN or bin/registry")
	fs.DurationVar(&o.PullTimeout, "pull-timeout", durationDefault(def("pull-timeout", ""), 10*time.Minute), "limit of one pull")
	fs.DurationVar(&o.OutageTimeout, "outage-timeout", durationDefault(def("outage-timeout", ""), 30*time.Second), "limit of one pull while the parent is down")
	fs.Var(&o.extraVariants, "variant", "an extra connected-registry variant NAME=EXPR[,EXPR...] of --set expressions (env:KEY=VALUE adds to the registry's environment, for experiments), measured after the built-in ones (repeatable)")
	fs.Var(&o.extraOutage, "outage-variant", "an extra variant for the outage benchmark, as --variant (repeatable)")
	fs.BoolVar(&o.keepDir, "keep", false, "keep the working directory (the storage section also keeps every process's output in its logs/)")
	for name, set := range map[string]func(string) error{
		"runs": intFlag(&o.Runs), "layer-size": int64Flag(&o.LayerSize), "cold-clients": intsFlag(&o.ColdClients),
		"warm-clients": intsFlag(&o.WarmClients), "sections": func(s string) error { o.Sections = splitList(s); return nil },
		"storage-clients": intFlag(&o.StorageClients), "storage-layers": intFlag(&o.StorageLayers),
		"storage-layer-size": int64Flag(&o.StorageLayerSize), "uplink-rate": intFlag(&o.UplinkRate),
	} {
		if v := def(name, ""); v != "" {
			_ = set(v)
		}
	}
}

// Complete fills defaults and checks the options.
func (o *Options) Complete() error {
	if o.Runs == 0 {
		o.Runs = 5
	}
	if o.LayerSize == 0 {
		o.LayerSize = 200_000_000
	}
	if o.ColdClients == nil {
		o.ColdClients = []int{10, 50}
	}
	if o.WarmClients == nil {
		o.WarmClients = []int{1, 10, 50}
	}
	if o.Sections == nil {
		o.Sections = []string{"single", "cold", "warm", "outage", "uplink", "token"}
	}
	if o.Proto == "" {
		o.Proto = http1
	}
	if o.PullTimeout == 0 {
		o.PullTimeout = 10 * time.Minute
	}
	if o.OutageTimeout == 0 {
		o.OutageTimeout = 30 * time.Second
	}
	if o.UplinkRate == 0 {
		o.UplinkRate = 50_000_000
	}
	if o.StorageClients == 0 {
		o.StorageClients = 8
	}
	if o.StorageLayers == 0 {
		o.StorageLayers = 3
	}
	if o.StorageLayerSize == 0 {
		o.StorageLayerSize = 64_000_000
	}
	if o.Runs < 1 || o.LayerSize < 1 || o.StorageClients < 1 || o.StorageLayers < 1 || o.StorageLayerSize < 1 {
		return errors.New("runs, layer-size, storage-clients, storage-layers and storage-layer-size must be positive")
	}
	for _, s := range o.Sections {
		switch s {
		case "single", "cold", "warm", "outage", "uplink", "token":
		case "storage":
			if len(o.Sections) > 1 {
				return errStorageAlone
			}
		default:
			return fmt.Errorf("section %q: want single, cold, warm, outage, uplink, token or storage", s)
		}
	}
	if o.Variants == nil {
		o.Variants = defaultVariants()
	}
	if o.ColdVariants == nil {
		o.ColdVariants = defaultColdVariants()
	}
	if o.OutageVariants == nil {
		o.OutageVariants = defaultOutageVariants()
	}
	for _, s := range o.extraVariants {
		v, err := parseVariant(s)
		if err != nil {
			return err
		}
		o.Variants = append(o.Variants, v)
	}
	for _, s := range o.extraOutage {
		v, err := parseVariant(s)
		if err != nil {
			return err
		}
		o.OutageVariants = append(o.OutageVariants, v)
	}
	if o.log == nil {
		o.log = os.Stderr
	}
	return nil
}

func (o *Options) has(section string) bool {
	for _, s := range o.Sections {
		if s == section {
			return true
		}
	}
	return false
}

// Run runs the benchmark and writes the report.
func (o *Options) Run(ctx context.Context, out io.Writer) (err error) {
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "connected-registry-bench-"); err != nil {
			return err
		}
		if !o.keepDir {
			defer os.RemoveAll(o.Dir)
		}
	}
	b := &bench{o: o}
	defer b.close()
	b.res.started, b.res.loadStart = time.Now(), loadAverage()
	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, s := range []struct {
		name string
		run  func(context.Context) error
	}{{"single", b.runSingle}, {"cold", b.runColdConcurrent}, {"warm", b.runWarmConcurrent}, {"outage", b.runOutage}, {"uplink", b.runUplink}, {"token", b.runToken}, {"storage", b.runStorage}} {
		if !o.has(s.name) {
			continue
		}
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	b.res.finished = time.Now()
	var report string
	if o.has("storage") {
		report = b.storageReport()
	} else {
		report = b.report()
	}
	if o.Out == "-" {
		_, err = io.WriteString(out, report)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.Out, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\nwrote %s\n", report, o.Out)
	return nil
}

func parseVariant(s string) (variant, error) {
	name, exprs, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return variant{}, fmt.Errorf("variant %q: want NAME=EXPR[,EXPR...]", s)
	}
	v := variant{name: name}
	for _, e := range strings.Split(exprs, ",") {
		switch {
		case strings.HasPrefix(e, "env:"):
			v.env = append(v.env, strings.TrimPrefix(e, "env:"))
		case e != "":
			v.set = append(v.set, e)
		}
	}
	return v, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intFlag(p *int) func(string) error {
	return func(s string) error {
		n, err := strconv.Atoi(s)
		*p = n
		return err
	}
}

func int64Flag(p *int64) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		*p = n
		return err
	}
}

func intsFlag(p *[]int) func(string) error {
	return func(s string) error {
		*p = (*p)[:0]
		for _, f := range splitList(s) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return err
			}
			*p = append(*p, n)
		}
		return nil
	}
}

func durationDefault(s string, fallback time.Duration) time.Duration {
	if d, err := time.ParseDuration(s); err == nil {
		return d
	}
	return fallback
}
