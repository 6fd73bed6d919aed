package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/connected-registry/connected-registry/internal/cli"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/postrender"
)

// Options of the benchmark.
type Options struct {
	// Sizes are the synthetic inputs' object counts (half Deployments, half Services).
	Sizes []int
	// Runs is the number of timed runs of each implementation on each input; the table shows the median.
	Runs int
	// Kustomize is the kustomize CLI; empty skips it.
	Kustomize string
	// Out receives the Markdown report; empty prints it.
	Out string
	// ColdChild is set in the child processes that measure a first run: ours or krusty.
	ColdChild string
	// ColdDir is the child's overlay directory.
	ColdDir string
}

func run(ctx context.Context, args []string, env cli.LookupEnv) error {
	var o Options
	var sizes string
	f := cli.NewFlagSet("bench/postrender", env, os.Stderr)
	f.StringVar(&sizes, "sizes", "BENCH_SIZES", "100,500", "synthetic input sizes, objects (half Deployments, half Services)")
	var runs string
	f.StringVar(&runs, "runs", "BENCH_RUNS", "3", "timed runs of each implementation per input (median shown)")
	f.StringVar(&o.Kustomize, "kustomize", "BENCH_KUSTOMIZE", filepath.Join(chartrender.RepoRoot(), "bin", "kustomize"), "the kustomize CLI; empty skips it")
	f.StringVar(&o.Out, "out", "BENCH_OUT", "", "write the Markdown report here (default: standard output)")
	f.StringVar(&o.ColdChild, "cold-child", "BENCH_COLD_CHILD", "", "internal: measure one first run (ours or krusty) in this process")
	f.StringVar(&o.ColdDir, "cold-dir", "BENCH_COLD_DIR", "", "internal: the overlay directory of -cold-child")
	if err := f.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Runs, err = strconv.Atoi(runs); err != nil || o.Runs < 1 {
		return fmt.Errorf("--runs %q is not a positive number", runs)
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return fmt.Errorf("--sizes: %q is not a size", s)
		}
		o.Sizes = append(o.Sizes, n)
	}
	log.SetOutput(io.Discard) // kustomize's deprecation warnings, once per build
	if o.ColdChild != "" {
		return coldChild(o.ColdChild, o.ColdDir, os.Stdout)
	}
	report, err := o.Run(ctx)
	if err != nil {
		return err
	}
	if o.Out == "" {
		_, err = io.WriteString(os.Stdout, report.Markdown())
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return err
	}
	fmt.Print(report.Markdown())
	return os.WriteFile(o.Out, []byte(report.Markdown()), 0o644)
}

// Input is one benchmark input: the chart's output (or a synthetic one) and the overlay applied to it.
type Input struct {
	Name    string
	Objects int
	Stream  []byte
	// Dir is the overlay directory, relative to the benchmark's tree: the example site, or "overlay" with
	// Kustomization.
	Dir           string
	Kustomization string
}

// Row is the result on one input.
type Row struct {
	Input             Input
	Ours, Krusty, CLI time.Duration
	// CPU time (user and system, this process or the CLI's): the machine may be shared, CPU time is steadier.
	OursCPU, KrustyCPU, CLICPU time.Duration
	Identical, CLIChecked      bool
	Parts                      bool
}

// Report is the whole benchmark.
type Report struct {
	Rows []Row
	// Cold start: the first Run in a fresh process (in-process time), and whole processes on the chart.
	ColdOurs, ColdKrusty, ProcOurs, ProcCLI time.Duration
}

// ChartInput is the chart's output (scenario "generated", trust distribution added by the post-renderer)
// with the example site overlay.
func ChartInput() (Input, error) {
	scenarios, err := chartrender.ScenarioFiles()
	if err != nil {
		return Input{}, err
	}
	res, err := chartrender.Render(chartrender.Options{ValuesFiles: []string{scenarios["generated"]}})
	if err != nil {
		return Input{}, err
	}
	r, err := postrender.New(postrender.Options{Trust: postrender.TrustOn, FS: filesys.MakeFsInMemory()})
	if err != nil {
		return Input{}, err
	}
	out, err := r.Run(bytes.NewBufferString(res.YAML()))
	if err != nil {
		return Input{}, err
	}
	stream := out.Bytes()
	return Input{Name: "chart", Objects: bytes.Count(stream, []byte("\nkind: ")) + boolInt(bytes.HasPrefix(stream, []byte("kind: "))),
		Stream: stream, Dir: siteDir}, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// siteDir is the example site overlay.
const siteDir = "kustomize/examples/site"

// SyntheticKustomization sets a namespace and labels, patches every Deployment (strategic merge) and some
// Services (JSON 6902), and patches one Deployment with an untargeted strategic-merge patch.
const SyntheticKustomization = `resources: [helm-output.yaml]
namespace: site
commonLabels: {site: berlin-1}
patches:
- target: {kind: Deployment}
  patch: |
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: any}
    spec:
      template:
        spec:
          tolerations: [{key: site.example.com/edge, operator: Exists}]
- target: {kind: Service, name: "app-1.*"}
  patch: |
    - op: add
      path: /metadata/annotations
      value: {site.example.com/exposed: "true"}
- patch: |
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: app-4}
    spec: {replicas: 3}
`

// Synthetic is n objects: n/2 Deployments and n/2 Services.
func Synthetic(n int) Input {
	var b strings.Builder
	for i := 0; i < n/2; i++ {
		fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%[1]d
  labels: {app: app-%[1]d}
spec:
  selector: {matchLabels: {app: app-%[1]d}}
  template:
    metadata: {labels: {app: app-%[1]d}}
    spec:
      containers:
      - name: app
        image: registry.example.com/app:1.%[1]d
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: app-%[1]d
spec:
  selector: {app: app-%[1]d}
  ports: [{port: 80, targetPort: 8080}]
`, i)
	}
	return Input{Name: fmt.Sprintf("synthetic N=%d", n), Objects: n / 2 * 2, Stream: []byte(b.String()), Dir: "overlay", Kustomization: SyntheticKustomization}
}

// files lays out an input: the repository's kustomize/ folder (the site example uses its components), and
// overlay/kustomization.yaml.
func files(in Input) (map[string][]byte, error) {
	out := map[string][]byte{}
	if in.Kustomization != "" {
		out[filepath.Join(in.Dir, "kustomization.yaml")] = []byte(in.Kustomization)
	}
	root := filepath.Join(chartrender.RepoRoot(), "kustomize")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		rel, err := filepath.Rel(chartrender.RepoRoot(), p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		out[rel] = data
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func memFS(fl map[string][]byte, dir string, chart []byte) (filesys.FileSystem, error) {
	m := filesys.MakeFsInMemory()
	for p, data := range fl {
		if err := m.WriteFile(filepath.Join("/w", p), data); err != nil {
			return nil, err
		}
	}
	if chart != nil {
		if err := m.WriteFile(filepath.Join("/w", dir, postrender.ResourceName), chart); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func ours(fl map[string][]byte, dir string, in []byte) ([]byte, error) {
	m, err := memFS(fl, dir, nil)
	if err != nil {
		return nil, err
	}
	r, err := postrender.New(postrender.Options{Dir: filepath.Join("/w", dir), FS: m})
	if err != nil {
		return nil, err
	}
	out, err := r.Run(bytes.NewBuffer(in))
	if err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// bareKrusty is what `kustomize build` does in process: the same options, the chart's output as a file.
func bareKrusty(fl map[string][]byte, dir string, in []byte) ([]byte, error) {
	m, err := memFS(fl, dir, in)
	if err != nil {
		return nil, err
	}
	return krustyRun(m, filepath.Join("/w", dir))
}

func krustyRun(m filesys.FileSystem, dir string) ([]byte, error) {
	o := krusty.MakeDefaultOptions()
	o.Reorder = krusty.ReorderOptionUnspecified
	o.PluginConfig = types.DisabledPluginConfig()
	res, err := krusty.MakeKustomizer(o).Run(m, dir)
	if err != nil {
		return nil, err
	}
	return res.AsYaml()
}

func onDisk(fl map[string][]byte, overlay string, chart []byte) (string, error) {
	dir, err := os.MkdirTemp("", "bench-postrender-")
	if err != nil {
		return "", err
	}
	for p, data := range fl {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			return "", err
		}
	}
	if chart != nil {
		if err := os.WriteFile(filepath.Join(dir, overlay, postrender.ResourceName), chart, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func kustomizeCLI(bin, dir string) ([]byte, time.Duration, error) {
	out, took, _, err := kustomizeCLICPU(bin, dir)
	return out, took, err
}

func kustomizeCLICPU(bin, dir string) ([]byte, time.Duration, time.Duration, error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, "build", dir)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("kustomize build: %w: %s", err, errOut.String())
	}
	return out.Bytes(), took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs f after a garbage collection, so that one run does not pay for the previous one's garbage.
func timed(f func() ([]byte, error)) ([]byte, time.Duration, time.Duration, error) {
	runtime.GC()
	start, cpu := time.Now(), cpuTime()
	out, err := f()
	return out, time.Since(start), cpuTime() - cpu, err
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Measure runs every implementation on one input, interleaved, Runs times after one warm-up each, and checks
// that the outputs are identical.
func (o Options) Measure(in Input) (Row, error) {
	row := Row{Input: in}
	fl, err := files(in)
	if err != nil {
		return row, err
	}
	oursOut, err := ours(fl, in.Dir, in.Stream)
	if err != nil {
		return row, fmt.Errorf("%s: ours: %w", in.Name, err)
	}
	krustyOut, err := bareKrusty(fl, in.Dir, in.Stream)
	if err != nil {
		return row, fmt.Errorf("%s: krusty: %w", in.Name, err)
	}
	row.Identical = bytes.Equal(oursOut, krustyOut)
	var dir string
	if o.Kustomize != "" {
		tree, err := onDisk(fl, in.Dir, in.Stream)
		if err != nil {
			return row, err
		}
		defer os.RemoveAll(tree)
		dir = filepath.Join(tree, in.Dir)
		cliOut, _, err := kustomizeCLI(o.Kustomize, dir)
		if err != nil {
			return row, err
		}
		row.CLIChecked = true
		row.Identical = row.Identical && bytes.Equal(oursOut, cliOut)
	}
	var tOurs, tKrusty, tCLI, cOurs, cKrusty, cCLI []time.Duration
	runs := o.Runs
	if in.Objects <= 100 && runs < 11 {
		runs = 11 // small inputs are quick and noisy: more runs
	}
	for i := 0; i < runs; i++ {
		_, d, c, err := timed(func() ([]byte, error) { return ours(fl, in.Dir, in.Stream) })
		if err != nil {
			return row, err
		}
		tOurs, cOurs = append(tOurs, d), append(cOurs, c)
		_, d, c, err = timed(func() ([]byte, error) { return bareKrusty(fl, in.Dir, in.Stream) })
		if err != nil {
			return row, err
		}
		tKrusty, cKrusty = append(tKrusty, d), append(cKrusty, c)
		if dir != "" {
			_, d, c, err := kustomizeCLICPU(o.Kustomize, dir)
			if err != nil {
				return row, err
			}
			tCLI, cCLI = append(tCLI, d), append(cCLI, c)
		}
	}
	row.Ours, row.Krusty = median(tOurs), median(tKrusty)
	row.OursCPU, row.KrustyCPU = median(cOurs), median(cKrusty)
	if len(tCLI) > 0 {
		row.CLI, row.CLICPU = median(tCLI), median(cCLI)
	}
	return row, nil
}

// Run measures every input, then the cold start.
func (o Options) Run(_ context.Context) (*Report, error) {
	rep := &Report{}
	chart, err := ChartInput()
	if err != nil {
		return nil, err
	}
	inputs := []Input{chart}
	for _, n := range o.Sizes {
		inputs = append(inputs, Synthetic(n))
	}
	for _, in := range inputs {
		fmt.Fprintf(os.Stderr, "bench/postrender: %s (%d objects)\n", in.Name, in.Objects)
		row, err := o.Measure(in)
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, row)
	}
	if err := o.coldStart(chart, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// coldStart measures the first run in fresh processes of this program (in-process time of the first Run, which
// pays kustomize's one-time OpenAPI initialisation) and whole processes: our binary and the kustomize CLI.
func (o Options) coldStart(chart Input, rep *Report) error {
	fl, err := files(chart)
	if err != nil {
		return err
	}
	dir, err := onDisk(fl, chart.Dir, nil)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "input.yaml"), chart.Stream, 0o644); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := func(kind string) (time.Duration, error) {
		var ds []time.Duration
		for i := 0; i < o.Runs; i++ {
			out, err := exec.Command(self, "--cold-child", kind, "--cold-dir", filepath.Join(dir, chart.Dir)).Output()
			if err != nil {
				return 0, fmt.Errorf("cold start child %s: %w", kind, err)
			}
			d, err := time.ParseDuration(strings.TrimSpace(string(out)))
			if err != nil {
				return 0, err
			}
			ds = append(ds, d)
		}
		return median(ds), nil
	}
	if rep.ColdOurs, err = child("ours"); err != nil {
		return err
	}
	if rep.ColdKrusty, err = child("krusty"); err != nil {
		return err
	}
	bin := filepath.Join(chartrender.RepoRoot(), "bin", "connected-registry-postrender")
	if _, err := os.Stat(bin); err == nil {
		var ds []time.Duration
		for i := 0; i < o.Runs; i++ {
			cmd := exec.Command(bin, "--kustomize-dir", filepath.Join(dir, chart.Dir))
			cmd.Stdin = bytes.NewReader(chart.Stream)
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w: %s", bin, err, out)
			}
			ds = append(ds, time.Since(start))
		}
		rep.ProcOurs = median(ds)
	}
	if o.Kustomize != "" {
		if err := os.WriteFile(filepath.Join(dir, chart.Dir, postrender.ResourceName), chart.Stream, 0o644); err != nil {
			return err
		}
		var ds []time.Duration
		for i := 0; i < o.Runs; i++ {
			_, d, err := kustomizeCLI(o.Kustomize, filepath.Join(dir, chart.Dir))
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		rep.ProcCLI = median(ds)
	}
	return nil
}

// coldChild runs one first Run in this fresh process and prints its duration.
func coldChild(kind, overlay string, out io.Writer) error {
	dir := filepath.Dir(filepath.Dir(filepath.Dir(overlay))) // the tree: <tree>/kustomize/examples/site
	in, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, overlay)
	if err != nil {
		return err
	}
	var took time.Duration
	switch kind {
	case "ours":
		r, err := postrender.New(postrender.Options{Dir: overlay})
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := r.Run(bytes.NewBuffer(in)); err != nil {
			return err
		}
		took = time.Since(start)
	case "krusty":
		m := filesys.MakeFsInMemory()
		fl, err := readTree(dir)
		if err != nil {
			return err
		}
		fl[filepath.Join(rel, postrender.ResourceName)] = in
		for p, data := range fl {
			if err := m.WriteFile(filepath.Join("/w", p), data); err != nil {
				return err
			}
		}
		start := time.Now()
		if _, err := krustyRun(m, filepath.Join("/w", rel)); err != nil {
			return err
		}
		took = time.Since(start)
	default:
		return fmt.Errorf("--cold-child %q is not ours or krusty", kind)
	}
	_, err = fmt.Fprintln(out, took)
	return err
}

func readTree(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		out[rel] = data
		return err
	})
	return out, err
}

func ms(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| input | objects | ours | bare krusty | kustomize CLI | ours / krusty | ours / CLI | CPU: ours / krusty / CLI | CPU ours / krusty | output identical |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, row := range r.Rows {
		ident := "ours = krusty"
		if row.CLIChecked {
			ident += " = CLI"
		}
		if !row.Identical {
			ident = "**DIFFERENT**"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s |\n", row.Input.Name, row.Input.Objects, ms(row.Ours), ms(row.Krusty),
			ms(row.CLI), ratio(row.Ours, row.Krusty), ratio(row.Ours, row.CLI), ms(row.OursCPU), ms(row.KrustyCPU), ms(row.CLICPU),
			ratio(row.OursCPU, row.KrustyCPU), ident)
	}
	b.WriteString("\nWall and CPU time (user+system, garbage collection included), medians of the timed runs, interleaved, in\n")
	b.WriteString("one process after a warm-up; ours includes New. The CLI is a whole process each time: it always pays its\n")
	b.WriteString("start-up and kustomize's OpenAPI initialisation.\n\n")
	b.WriteString("| cold start (chart) | ours | bare krusty / kustomize CLI |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| first Run in a fresh process (in-process time) | %s | %s (krusty) |\n", ms(r.ColdOurs), ms(r.ColdKrusty))
	fmt.Fprintf(&b, "| whole process: our binary vs `kustomize build` | %s | %s (CLI) |\n", ms(r.ProcOurs), ms(r.ProcCLI))
	return b.String()
}
