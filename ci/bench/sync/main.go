// Command sync-bench measures the scheduled pre-sync: `connected-registry sync`, run with the args of the chart's
// sync CronJob, makes a connected registry (the chart's registry pod, as processes) hold about 1 GiB of new
// multi-arch content from a parent behind a thin uplink (testenv.Link); in the same run go-containerregistry's
// crane copies the same content through an uplink of the same rate straight to a plain registry; then the sync
// runs again on the unchanged set. Every registry is a real Distribution v3.1.2 on this machine's loopback.
//
//	go run ./ci/bench/sync [--out _out/bench/sync.md] [--tags 4 --layers 2 --layer-size 67108864] [--small-tags 100]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/connected-registry/connected-registry/internal/presync"
	"github.com/connected-registry/connected-registry/internal/testing/apistub"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

const (
	parentUser     = "cr-sync-token"
	parentPassword = "Sync+Token/Password=2"
	clusterIP      = "10.96.0.50"
	bigRepo        = "bench/big"
	smallRepo      = "bench/many"
	cronJobName    = "cr-connected-registry-sync"
	statusName     = "cr-connected-registry-sync-status"
	namespace      = "connected-registry"
)

// options of one run.
type options struct {
	out, dir, registryBin string
	tags, layers          int
	layerSize             int64
	smallTags             int
	uplinkRate            int
	concurrency           int
	log                   io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "sync-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	o := options{log: errOut}
	fs := flag.NewFlagSet("sync-bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&o.out, "out", filepath.Join(chartrender.RepoRoot(), "_out", "bench", "sync.md"), "markdown report to write; - prints it only")
	fs.StringVar(&o.dir, "dir", "", "working directory (the registries' storage); empty: a temporary directory, removed afterwards")
	fs.StringVar(&o.registryBin, "registry-bin", "", "Distribution's binary; empty: $REGISTRY_BIN or bin/registry")
	fs.IntVar(&o.tags, "tags", 4, "tags of the large repository, each an index of linux/amd64 and linux/arm64")
	fs.IntVar(&o.layers, "layers", 2, "layers of each platform's image of the large repository")
	fs.Int64Var(&o.layerSize, "layer-size", 64<<20, "bytes of each layer of the large repository (4 tags x 2 platforms x 2 layers x 64 MiB = 1 GiB)")
	fs.IntVar(&o.smallTags, "small-tags", 100, "tags of the small repository (multi-arch, 1 KiB layers), for the time per tag of a re-sync")
	fs.IntVar(&o.uplinkRate, "uplink-rate", 50_000_000, "bytes per second of the uplink to the parent")
	fs.IntVar(&o.concurrency, "concurrency", 4, "sync.concurrency, and crane's jobs and tags at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("no arguments expected, got %q", fs.Args())
	}
	if o.registryBin == "" {
		o.registryBin = os.Getenv("REGISTRY_BIN")
	}
	if o.registryBin == "" {
		o.registryBin = filepath.Join(chartrender.RepoRoot(), "bin", "registry")
	}
	if _, err := os.Stat(o.registryBin); err != nil {
		return fmt.Errorf("the Distribution registry binary: %w (run ci/tools.sh)", err)
	}
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "sync-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dir = dir
	}
	b := &bench{o: o}
	defer b.close()
	report, err := b.run(ctx)
	if err != nil {
		return err
	}
	fmt.Fprint(out, report)
	if o.out != "-" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(errOut, "report written to %s\n", o.out)
	}
	return nil
}

type bench struct {
	o          options
	ca         *testenv.CA
	productBin string
	parentName string // the parent's host name, which its certificate holds
	parentIP   string
	parentPort string
	closers    []func()
	// pids are the processes whose CPU time the report counts, by role.
	pids    map[string][]int
	podPids []int
	// content is every manifest and blob of the selected set, by digest.
	content map[string]int64
	tags    []string // repo:tag of the set
}

func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.o.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// result is one measured copy.
type result struct {
	what    string
	elapsed time.Duration
	uplink  int64 // bytes the uplink carried towards the site
	note    string
	cpu     []roleCPU
	usage   []int64 // bytes the uplink carried in each second of the copy
}

// watchUplink samples the bytes the link carries, second by second, until stop is called; stop returns them.
// Where a copy leaves the uplink idle (its start, its middle, its tail) is where its time goes.
func watchUplink(link *testenv.Link) (stop func() []int64) {
	done := make(chan struct{})
	out := make(chan []int64)
	go func() {
		var per []int64
		last := link.Sent()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				n := link.Sent()
				per = append(per, n-last)
				last = n
			case <-done:
				if n := link.Sent(); n > last {
					per = append(per, n-last)
				}
				out <- per
				return
			}
		}
	}()
	return func() []int64 { close(done); return <-out }
}

// usageLine renders a copy's uplink use per second in MB/s, and counts the seconds under half the link's rate.
func usageLine(usage []int64, rate int64) string {
	var parts []string
	slow := 0
	for i, n := range usage {
		parts = append(parts, fmt.Sprintf("%.0f", float64(n)/1e6))
		if i < len(usage)-1 && n < rate/2 {
			slow++
		}
	}
	return fmt.Sprintf("%s (%d whole seconds under half the rate)", strings.Join(parts, " "), slow)
}

// roleCPU is the CPU time (user and system) the processes of a role used during a copy.
type roleCPU struct {
	role string
	used time.Duration
}

// cpuMark is the CPU time every role has used so far, and this process's.
type cpuMark map[string]time.Duration

func (b *bench) markCPU() cpuMark {
	m := cpuMark{"bench process (the link; crane in its copy)": selfCPU()}
	for role, pids := range b.pids {
		for _, pid := range pids {
			m[role] += procCPU(pid)
		}
	}
	return m
}

// since returns the CPU time each role used since m, for the roles named (in that order).
func (b *bench) cpuSince(m cpuMark, roles ...string) []roleCPU {
	now := b.markCPU()
	var out []roleCPU
	for _, r := range roles {
		out = append(out, roleCPU{r, now[r] - m[r]})
	}
	return out
}

// procCPU reads a process's user and system time from /proc (clock ticks of 10 ms); 0 when unknown.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (b *bench) run(ctx context.Context) (string, error) {
	started := time.Now()
	load, _ := os.ReadFile("/proc/loadavg")
	var err error
	if b.ca, err = testenv.NewCA("connected-registry sync benchmark CA"); err != nil {
		return "", err
	}
	b.logf("building ./cmd/connected-registry")
	if b.productBin, err = testenv.BuildProduct(chartrender.RepoRoot(), b.o.dir); err != nil {
		return "", err
	}
	b.parentName, b.parentIP = testenv.LoopbackName()
	parent, err := b.startRegistry(ctx, "parent")
	if err != nil {
		return "", err
	}
	_, b.parentPort, _ = net.SplitHostPort(parent.Host)
	b.logf("seeding the parent with %d tags of %d x 2 x %d B and %d small multi-arch tags", b.o.tags, b.o.layers, b.o.layerSize, b.o.smallTags)
	if err := b.seed(ctx, parent.Host); err != nil {
		return "", err
	}
	var total int64
	for _, n := range b.content {
		total += n
	}
	b.logf("the set: %d tags, %d manifests and blobs, %d B", len(b.tags), len(b.content), total)

	// 1. The pre-sync through the uplink, into a connected registry with an empty cache.
	link, via, err := b.startLink()
	if err != nil {
		return "", err
	}
	crHost, err := b.startConnected(ctx, via)
	if err != nil {
		return "", err
	}
	api := apistub.Start()
	b.closers = append(b.closers, api.Close)
	args, err := b.cronJobArgs(api, crHost, via)
	if err != nil {
		return "", err
	}
	b.logf("pre-sync through the %d B/s uplink", b.o.uplinkRate)
	first, st1, err := b.sync(ctx, api, args, link)
	if err != nil {
		return "", err
	}
	first.what = "pre-sync, `connected-registry sync` through the registry"
	first.note = fmt.Sprintf("%s: %d tags synced, %d blobs fetched (%d B), %d held", st1.Run.Result, st1.Run.TagsSynced, st1.Run.BlobsFetched, st1.Run.BytesFetched, st1.Run.BlobsCached)
	if st1.Run.Result != presync.ResultComplete {
		return "", fmt.Errorf("the pre-sync ended %s: %s", st1.Run.Result, st1.Run.Message)
	}

	// 2. The same set again, unchanged.
	b.logf("re-sync of the unchanged set")
	again, st2, err := b.sync(ctx, api, args, link)
	if err != nil {
		return "", err
	}
	again.what = "re-sync of the unchanged set"
	again.note = fmt.Sprintf("%s: %d tags unchanged, %d synced, %d blobs fetched", st2.Run.Result, st2.Run.TagsUnchanged, st2.Run.TagsSynced, st2.Run.BlobsFetched)
	link.Close()

	// 3. crane copy of the same set through an uplink of the same rate, straight to a plain registry.
	plain, err := b.startRegistry(ctx, "plain")
	if err != nil {
		return "", err
	}
	link2, via2, err := b.startLink()
	if err != nil {
		return "", err
	}
	b.logf("crane copy through the %d B/s uplink to a plain registry", b.o.uplinkRate)
	cr, err := b.craneCopy(ctx, via2, plain.Host, link2)
	if err != nil {
		return "", err
	}
	link2.Close()

	return b.report(started, strings.TrimSpace(string(load)), total, first, again, cr), nil
}

// startRegistry starts a Distribution registry with TLS and htpasswd (the parent, or crane's plain target).
func (b *bench) startRegistry(ctx context.Context, role string) (*testenv.Parent, error) {
	port, err := podemu.FreePort()
	if err != nil {
		return nil, err
	}
	p, err := testenv.StartParent(ctx, testenv.ParentOptions{Bin: b.o.registryBin, Dir: filepath.Join(b.o.dir, role),
		Addr: net.JoinHostPort(b.parentName, strconv.Itoa(port)), CA: b.ca, User: parentUser, Password: parentPassword})
	if err != nil {
		return nil, fmt.Errorf("the %s registry: %w", role, err)
	}
	b.closers = append(b.closers, p.Stop)
	if b.pids == nil {
		b.pids = map[string][]int{}
	}
	b.pids[role+" registry"] = append(b.pids[role+" registry"], p.Pid())
	return p, nil
}

// startLink starts an uplink to the parent and returns it with the parent's name at the link's port.
func (b *bench) startLink() (*testenv.Link, string, error) {
	link, err := testenv.StartLink(net.JoinHostPort(b.parentIP, "0"), net.JoinHostPort(b.parentIP, b.parentPort), b.o.uplinkRate)
	if err != nil {
		return nil, "", err
	}
	b.closers = append(b.closers, link.Close)
	_, port, _ := net.SplitHostPort(link.Addr)
	return link, net.JoinHostPort(b.parentName, port), nil
}

// seed pushes the set to the parent.
func (b *bench) seed(ctx context.Context, host string) error {
	b.content = map[string]int64{}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(b.ca.Transport()),
		remote.WithAuth(&authn.Basic{Username: parentUser, Password: parentPassword}), remote.WithJobs(b.o.concurrency)}
	seed := uint64(time.Now().UnixNano())
	push := func(repo, tag string, layers int, size int64) error {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for _, arch := range []string{"amd64", "arm64"} {
			img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
			var ls []v1.Layer
			for range layers {
				seed++
				l, err := newSeededLayer(size, seed)
				if err != nil {
					return err
				}
				ls = append(ls, l)
			}
			img, err := mutate.AppendLayers(img, ls...)
			if err != nil {
				return err
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return err
			}
			cf = cf.DeepCopy()
			cf.OS, cf.Architecture = "linux", arch
			if img, err = mutate.ConfigFile(img, cf); err != nil {
				return err
			}
			if err := b.count(img); err != nil {
				return err
			}
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
		}
		raw, err := idx.RawManifest()
		if err != nil {
			return err
		}
		d, _ := idx.Digest()
		b.content[d.String()] = int64(len(raw))
		ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
		if err != nil {
			return err
		}
		b.tags = append(b.tags, repo+":"+tag)
		return remote.WriteIndex(ref, idx, opts...)
	}
	for i := range b.o.tags {
		if err := push(bigRepo, fmt.Sprintf("v%d", i+1), b.o.layers, b.o.layerSize); err != nil {
			return err
		}
	}
	for i := range b.o.smallTags {
		if err := push(smallRepo, fmt.Sprintf("t%03d", i), 1, 1<<10); err != nil {
			return err
		}
	}
	return nil
}

// count adds the image's manifest, config and layers to the content.
func (b *bench) count(img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	d, _ := img.Digest()
	b.content[d.String()] = int64(len(raw))
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	b.content[m.Config.Digest.String()] = m.Config.Size
	for _, l := range m.Layers {
		b.content[l.Digest.String()] = l.Size
	}
	return nil
}

// startConnected starts the chart's registry pod, as processes, for the parent at parentHost (the uplink).
func (b *bench) startConnected(ctx context.Context, parentHost string) (string, error) {
	crCert, crKey, err := b.ca.Issue("cr-connected-registry", []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(clusterIP)}, nil)
	if err != nil {
		return "", err
	}
	res, err := b.render(parentHost, map[string]any{
		"tls.crt": base64.StdEncoding.EncodeToString(crCert), "tls.key": base64.StdEncoding.EncodeToString(crKey),
		"tls.cacrt": base64.StdEncoding.EncodeToString(b.ca.CertPEM),
	})
	if err != nil {
		return "", err
	}
	port, err := podemu.FreePort()
	if err != nil {
		return "", err
	}
	pd, err := podemu.New(res, podemu.Options{Dir: filepath.Join(b.o.dir, "cr"), RegistryBin: b.o.registryBin, ProductBin: b.productBin, Port: port})
	if err != nil {
		return "", err
	}
	var sidecars []podemu.Command
	registry, err := pd.Start(func(sc podemu.Command) error { sidecars = append(sidecars, sc); return nil })
	if err != nil {
		return "", err
	}
	for _, sc := range sidecars {
		if err := b.startProcess(sc.Bin, sc.Args, sc.Env); err != nil {
			return "", err
		}
	}
	for _, local := range pd.Listen {
		if err := podemu.WaitListening(local, 10*time.Second, nil); err != nil {
			return "", fmt.Errorf("a sidecar of the connected registry: %w", err)
		}
	}
	if err := b.startProcess(registry.Bin, registry.Args, registry.Env); err != nil {
		return "", err
	}
	b.pids["registry pod"] = b.podPids
	host := "127.0.0.1:" + strconv.Itoa(port)
	client := &http.Client{Transport: b.ca.Transport(), Timeout: 2 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get("https://" + host + "/")
		if err == nil {
			resp.Body.Close()
			return host, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("the connected registry at %s is not ready: %w", host, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startProcess starts a process of the registry pod.
func (b *bench) startProcess(bin string, args, env []string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.podPids = append(b.podPids, cmd.Process.Pid)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.closers = append(b.closers, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return nil
}

// render renders the chart as tests/registry does, for the parent at parentHost, with the sync of the set.
func (b *bench) render(parentHost string, values map[string]any) (*chartrender.Result, error) {
	values["connectionString"] = "ConnectedRegistryName=cr;SyncTokenName=" + parentUser + ";SyncTokenPassword=" + parentPassword +
		";ParentGatewayEndpoint=" + parentHost + ";ParentEndpointProtocol=https"
	values["registry"] = map[string]any{"parent": map[string]any{"caBundle": string(b.ca.CertPEM)}}
	values["sync"] = map[string]any{"enabled": true, "concurrency": b.o.concurrency, "repositories": []any{
		map[string]any{"name": bigRepo, "tagRegex": "^v[0-9]+$"},
		map[string]any{"name": smallRepo, "tagRegex": "^t[0-9]+$"},
	}}
	return chartrender.Render(chartrender.Options{
		Set:    []string{"service.clusterIP=" + clusterIP, "cert-manager.enabled=false", "cert-manager.install=false"},
		Values: values,
	})
}

// cronJobArgs renders the chart and returns its sync CronJob's args, moved here as tests/registry's TestSync
// moves them: the Service's address to the registry's port, the mounted trust bundle to the CA's file, the API
// server to the stand-in, which holds the rendered status ConfigMap.
func (b *bench) cronJobArgs(api *apistub.Server, crHost, parentHost string) ([]string, error) {
	res, err := b.render(parentHost, map[string]any{})
	if err != nil {
		return nil, err
	}
	cj, ok := res.Find("CronJob", cronJobName)
	if !ok {
		return nil, fmt.Errorf("the chart renders no CronJob %s", cronJobName)
	}
	cm, ok := res.Find("ConfigMap", statusName)
	if !ok {
		return nil, fmt.Errorf("the chart renders no ConfigMap %s", statusName)
	}
	raw, err := json.Marshal(cm.Object)
	if err != nil {
		return nil, err
	}
	status := &corev1.ConfigMap{}
	if err := json.Unmarshal(raw, status); err != nil {
		return nil, err
	}
	api.PutConfigMap(status)
	var job struct {
		Spec struct {
			JobTemplate struct {
				Spec struct{ Template struct{ Spec corev1.PodSpec } }
			} `json:"jobTemplate"`
		}
	}
	if raw, err = json.Marshal(cj.Object); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &job); err != nil {
		return nil, err
	}
	caFile := filepath.Join(b.o.dir, "ca.crt")
	if err := os.WriteFile(caFile, b.ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	kubeconfig, err := api.WriteKubeconfig(b.o.dir)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, a := range job.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args {
		switch {
		case strings.HasPrefix(a, "--registry="):
			a = "--registry=https://" + crHost
		case strings.HasPrefix(a, "--ca-file="):
			a = "--ca-file=" + caFile
		}
		args = append(args, a)
	}
	return append(args, "--kubeconfig="+kubeconfig), nil
}

// sync runs the binary once and returns its time, the uplink's bytes and the status it wrote.
func (b *bench) sync(ctx context.Context, api *apistub.Server, args []string, link *testenv.Link) (result, *presync.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	before := link.Sent()
	cmd := exec.CommandContext(ctx, b.productBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	mark := b.markCPU()
	stop := watchUplink(link)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := result{elapsed: time.Since(start), uplink: link.Sent() - before, usage: stop()}
	r.cpu = b.cpuSince(mark, "parent registry", "bench process (the link; crane in its copy)", "registry pod")
	if cmd.ProcessState != nil {
		r.cpu = append(r.cpu, roleCPU{"connected-registry sync", cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()})
	}
	if err != nil {
		return r, nil, fmt.Errorf("connected-registry sync: %w\n%s", err, out)
	}
	cm := api.ConfigMap(namespace, statusName)
	if cm == nil {
		return r, nil, fmt.Errorf("the status ConfigMap %s is gone", statusName)
	}
	st, err := presync.ParseStatus([]byte(cm.Data[presync.StatusKey]))
	return r, st, err
}

// craneCopy copies every tag of the set from the parent (through the uplink at parentHost) to dst with crane,
// as many tags at once as the sync works on.
func (b *bench) craneCopy(ctx context.Context, parentHost, dst string, link *testenv.Link) (result, error) {
	opts := []crane.Option{crane.WithContext(ctx), crane.WithTransport(b.ca.Transport()),
		crane.WithAuth(&authn.Basic{Username: parentUser, Password: parentPassword}), crane.WithJobs(b.o.concurrency)}
	before := link.Sent()
	mark := b.markCPU()
	stop := watchUplink(link)
	start := time.Now()
	sem := make(chan struct{}, b.o.concurrency)
	errs := make([]error, len(b.tags))
	var wg sync.WaitGroup
	for i, tag := range b.tags {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = crane.Copy(parentHost+"/"+tag, dst+"/"+tag, opts...)
		})
	}
	wg.Wait()
	r := result{what: "`crane copy` straight to a plain registry", elapsed: time.Since(start), uplink: link.Sent() - before, usage: stop()}
	r.cpu = b.cpuSince(mark, "parent registry", "bench process (the link; crane in its copy)", "plain registry")
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	r.note = fmt.Sprintf("%d tags, %d at once, %d jobs each", len(b.tags), b.o.concurrency, b.o.concurrency)
	return r, nil
}

func (b *bench) report(started time.Time, load string, total int64, first, again, cr result) string {
	var s strings.Builder
	mbps := func(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }
	fmt.Fprintf(&s, "# Scheduled pre-sync benchmark\n\n")
	fmt.Fprintf(&s, "Run %s on %s/%s, %d CPUs, load average at start %s; took %s.\n\n", started.UTC().Format(time.RFC3339),
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), load, time.Since(started).Round(time.Second))
	fmt.Fprintf(&s, "The set: `%s` with %d tags, each an OCI index of linux/amd64 and linux/arm64 with %d layers of %d B, and `%s` with %d small multi-arch tags: %d tags, %d manifests and blobs, %d B (%.1f MB). Uplink: testenv.Link at %d B/s (%.0f MB/s). Sync concurrency %d.\n\n",
		bigRepo, b.o.tags, b.o.layers, b.o.layerSize, smallRepo, b.o.smallTags, len(b.tags), len(b.content), total, float64(total)/1e6,
		b.o.uplinkRate, float64(b.o.uplinkRate)/1e6, b.o.concurrency)
	fmt.Fprintf(&s, "| copy | time | content rate | of the uplink | bytes over the uplink | notes |\n|---|---|---|---|---|---|\n")
	for _, r := range []result{first, cr} {
		fmt.Fprintf(&s, "| %s | %s | %.1f MB/s | %.3f | %d | %s |\n", r.what, r.elapsed.Round(10*time.Millisecond),
			mbps(total, r.elapsed), mbps(total, r.elapsed)*1e6/float64(b.o.uplinkRate), r.uplink, r.note)
	}
	fmt.Fprintf(&s, "| %s | %s | | | %d | %s |\n\n", again.what, again.elapsed.Round(10*time.Millisecond), again.uplink, again.note)
	perHundred := again.elapsed * 100 / time.Duration(len(b.tags))
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	ofUplink := mbps(total, first.elapsed) * 1e6 / float64(b.o.uplinkRate)
	ofCrane := cr.elapsed.Seconds() / first.elapsed.Seconds()
	fmt.Fprintf(&s, "CPU time (user and system) of each process during each copy, on %d CPUs: a copy whose total nears its time x CPUs is CPU-bound.\n\n| copy | CPU by process | total |\n|---|---|---|\n", runtime.NumCPU())
	for _, r := range []result{first, cr, again} {
		var parts []string
		var sum time.Duration
		for _, c := range r.cpu {
			parts = append(parts, fmt.Sprintf("%s %s", c.role, c.used.Round(10*time.Millisecond)))
			sum += c.used
		}
		fmt.Fprintf(&s, "| %s | %s | %s |\n", r.what, strings.Join(parts, ", "), sum.Round(10*time.Millisecond))
	}
	s.WriteString("\n")
	fmt.Fprintf(&s, "Uplink use in MB/s, second by second:\n\n")
	for _, r := range []result{first, cr} {
		fmt.Fprintf(&s, "- %s: %s\n", r.what, usageLine(r.usage, int64(b.o.uplinkRate)))
	}
	s.WriteString("\n")
	fmt.Fprintf(&s, "| measure | value | goal | |\n|---|---|---|---|\n")
	fmt.Fprintf(&s, "| pre-sync rate / uplink rate | %.3f | >= 0.90 | %s |\n", ofUplink, verdict(ofUplink >= 0.90))
	fmt.Fprintf(&s, "| pre-sync rate / crane copy rate | %.3f | >= 0.95 | %s |\n", ofCrane, verdict(ofCrane >= 0.95))
	fmt.Fprintf(&s, "| re-sync: bytes over the uplink | %d B | < 1 MB | %s |\n", again.uplink, verdict(again.uplink < 1e6))
	fmt.Fprintf(&s, "| re-sync: time per 100 tags | %s | < 2 s | %s |\n", perHundred.Round(time.Millisecond), verdict(perHundred < 2*time.Second))
	return s.String()
}

// seededLayer is an uncompressed layer of size pseudo-random bytes from seed, generated on each read rather
// than held, so that a 1 GiB set needs neither memory nor disk in this process.
type seededLayer struct {
	size   int64
	seed   uint64
	digest v1.Hash
}

func newSeededLayer(size int64, seed uint64) (*seededLayer, error) {
	h := sha256.New()
	if err := writeSeeded(h, size, seed); err != nil {
		return nil, err
	}
	return &seededLayer{size: size, seed: seed, digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}}, nil
}

func writeSeeded(w io.Writer, size int64, seed uint64) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	src := rand.NewChaCha8(key)
	buf := make([]byte, 256<<10)
	for size > 0 {
		n := min(int64(len(buf)), size)
		_, _ = src.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

func (l *seededLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *seededLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *seededLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeSeeded(pw, l.size, l.seed)) }()
	return pr, nil
}
func (l *seededLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *seededLayer) Size() (int64, error)                 { return l.size, nil }
func (l *seededLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
