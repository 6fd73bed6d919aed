package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// bench holds one run's environment and results.
type bench struct {
	o      *Options
	e      *env
	single *testImage // the large single-layer image
	multi  *testImage // the small multi-arch image
	images []*testImage
	sizes  map[string]int64 // digest → size of every manifest and blob of the images
	res    results

	// storage is the storage section's image: a few large layers and small ones. The section runs alone, with
	// only this image.
	storage *testImage
}

// results are everything the report prints.
type results struct {
	started, finished time.Time
	loadStart         string
	single            []*series // single pulls, every path, every image
	coldConcurrent    []*concurrentResult
	warmConcurrent    []*concurrentResult
	outage            []*series
	uplink            []*series // direct and cold pulls through a thin uplink
	token             []*tokenResult
	storage           []*storageResult
	notes             []string
}

// series is one measured quantity, repeated.
type series struct {
	image   *testImage
	path    string // "raw TLS", "direct", "cold", "warm", or an outage case
	variant string
	ref     string // "tag" or "digest", for outage cases
	times   []time.Duration
	bytes   int64 // bytes one operation reads
	errs    []error
	parent  []int64 // bytes of the blobs the parent sent, per run (cold pulls)
	// parentLogged is the parent's access log's count of blob bytes, per run.
	parentLogged []int64
	// cpu is the CPU time each process of the path used, per run, by role (cpuRoles).
	cpu map[string][]time.Duration
}

// addCPU records the CPU time of one run.
func (s *series) addCPU(used map[string]time.Duration) {
	if s.cpu == nil {
		s.cpu = map[string][]time.Duration{}
	}
	for role, d := range used {
		s.cpu[role] = append(s.cpu[role], d)
	}
}

func (s *series) add(d time.Duration, n int64, err error) {
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	s.times = append(s.times, d)
	s.bytes = n
}

// concurrentResult is one client count of a concurrency benchmark.
type concurrentResult struct {
	image        *testImage
	clients      int
	variant      string
	wall         []time.Duration // from the first request to the last byte of the last client
	latencies    []time.Duration // per client pull
	parentBlobs  []int64         // bytes of blobs the parent sent, per run
	parentLogged []int64         // the parent's access log's count of them
	parentReqs   []int
	errs         []error
}

func (b *bench) setup(ctx context.Context) error {
	o := b.o
	registryBin, err := registryBinary(o.RegistryBin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	productBin, err := testenv.BuildProduct(chartrender.RepoRoot(), o.Dir)
	if err != nil {
		return err
	}
	if b.e, err = newEnv(o.Dir, registryBin, productBin, o.log); err != nil {
		return err
	}
	rawDir := filepath.Join(o.Dir, "raw")
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}
	if o.has("storage") {
		return b.setupStorage(ctx, rawDir)
	}
	b.e.logf("generating a %s seeded layer and a multi-arch image", humanBytes(o.LayerSize))
	if b.single, err = newSingleLayer(rawDir, o.LayerSize, 1); err != nil {
		return err
	}
	if b.multi, err = newMultiArch(2); err != nil {
		return err
	}
	b.images = []*testImage{b.single, b.multi}
	if b.sizes, err = blobSizes(b.images...); err != nil {
		return err
	}
	if err := b.e.startParent(ctx); err != nil {
		return err
	}
	for _, img := range b.images {
		if err := b.e.push(img); err != nil {
			return fmt.Errorf("pushing %s to the parent: %w", img.repo, err)
		}
		if err := img.writeRaw(rawDir); err != nil {
			return err
		}
	}
	b.e.logf("parent %s seeded; starting the raw TLS file server", b.e.parentHost)
	return b.e.startRaw(ctx, rawDir)
}

func (b *bench) close() {
	if b.e == nil {
		return
	}
	b.e.parent.stop()
	b.e.raw.stop()
}

// pullOnce pulls img by ref from host with a fresh client (a fresh node: new connections).
func (b *bench) pullOnce(ctx context.Context, host string, auth bool, img *testImage, ref string, timeout time.Duration) (time.Duration, int64, error) {
	return b.pullProto(ctx, b.o.Proto, host, auth, img, ref, timeout)
}

func (b *bench) pullProto(ctx context.Context, proto clientProto, host string, auth bool, img *testImage, ref string, timeout time.Duration) (time.Duration, int64, error) {
	user, pass := "", ""
	if auth {
		user, pass = parentUser, parentPassword
	}
	p := newPuller(b.e.ca.Pool, host, proto, user, pass, timeout)
	defer p.close()
	start := time.Now()
	n, err := p.pull(ctx, img.repo, ref, img.digest)
	d := time.Since(start)
	if err == nil && n != img.size {
		err = fmt.Errorf("read %d bytes, want %d", n, img.size)
	}
	return d, n, err
}

func (b *bench) newSeries(img *testImage, path, variant string) *series {
	s := &series{image: img, path: path, variant: variant}
	b.res.single = append(b.res.single, s)
	return s
}

// runSingle measures single pulls: raw TLS, direct from the parent, and through a connected registry of each
// variant, cold (a new registry with an empty cache) and warm (the same registry right after). The paths
// take turns within each run, so that the machine's load falls on all of them alike. Clients that offer
// HTTP/2 (crane, go-containerregistry) also pull the large image warm, from the raw server and each variant.
func (b *bench) runSingle(ctx context.Context) error {
	type pair struct{ cold, warm, warmH2 *series }
	raw, direct := map[*testImage]*series{}, map[*testImage]*series{}
	through := map[string]map[*testImage]pair{}
	h2 := b.o.Proto == http1
	var rawH2 *series
	for _, img := range b.images {
		raw[img] = b.newSeries(img, "raw TLS", "")
		direct[img] = b.newSeries(img, "direct", "")
	}
	if h2 {
		rawH2 = b.newSeries(b.single, "raw TLS, HTTP/2 client", "")
	}
	for _, v := range b.o.Variants {
		through[v.name] = map[*testImage]pair{}
		for _, img := range b.images {
			p := pair{cold: b.newSeries(img, "cold", v.name), warm: b.newSeries(img, "warm", v.name)}
			if h2 && img == b.single {
				p.warmH2 = b.newSeries(img, "warm, HTTP/2 client", v.name)
			}
			through[v.name][img] = p
		}
	}
	for run := 0; run < b.o.Runs; run++ {
		b.e.logf("single pulls: run %d of %d", run+1, b.o.Runs)
		for _, img := range b.images {
			m := b.meter(nil, true)
			before := m.snapshot()
			raw[img].add(b.pullOnce(ctx, b.e.rawHost, false, img, img.byTag(), b.o.PullTimeout))
			raw[img].addCPU(m.since(before))
			m = b.meter(nil, false)
			before = m.snapshot()
			direct[img].add(b.pullOnce(ctx, b.e.parentHost, true, img, img.byTag(), b.o.PullTimeout))
			direct[img].addCPU(m.since(before))
		}
		if h2 {
			rawH2.add(b.pullProto(ctx, http2, b.e.rawHost, false, b.single, b.single.byTag(), b.o.PullTimeout))
		}
		for _, v := range b.o.Variants {
			cr, err := b.e.startConnected(ctx, v, filepath.Join(b.o.Dir, "cr"))
			if err != nil {
				return err
			}
			for _, img := range b.images {
				s := through[v.name][img]
				b.e.parent.settle(100*time.Millisecond, 2*time.Second)
				_, mark := b.e.parent.traffic(0)
				m := b.meter(cr, false)
				before := m.snapshot()
				s.cold.add(b.pullOnce(ctx, cr.host, false, img, img.byTag(), b.o.PullTimeout))
				if err := cr.waitStored(img, 30*time.Second); err != nil {
					s.cold.errs = append(s.cold.errs, err)
				}
				s.cold.addCPU(m.since(before))
				b.e.parent.settle(100*time.Millisecond, 2*time.Second)
				t, _ := b.e.parent.traffic(mark)
				s.cold.parent = append(s.cold.parent, t.sent(b.sizes))
				s.cold.parentLogged = append(s.cold.parentLogged, t.blobBytes)
				before = m.snapshot()
				s.warm.add(b.pullOnce(ctx, cr.host, false, img, img.byTag(), b.o.PullTimeout))
				s.warm.addCPU(m.since(before))
				if s.warmH2 != nil {
					s.warmH2.add(b.pullProto(ctx, http2, cr.host, false, img, img.byTag(), b.o.PullTimeout))
				}
			}
			cr.remove()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// concurrent runs n clients that start together and pull img by tag from host; it returns the wall time and
// each client's time.
func (b *bench) concurrent(ctx context.Context, host string, img *testImage, n int) (time.Duration, []time.Duration, error) {
	return b.concurrentSpread(ctx, []string{host}, img, n)
}

// concurrentSpread runs n clients as concurrent does, client i pulling from hosts[i mod len(hosts)]: spread
// round-robin over the replicas, as a Service spreads new connections.
func (b *bench) concurrentSpread(ctx context.Context, hosts []string, img *testImage, n int) (time.Duration, []time.Duration, error) {
	pullers := make([]*puller, n)
	for i := range pullers {
		pullers[i] = newPuller(b.e.ca.Pool, spreadHost(hosts, i), b.o.Proto, "", "", b.o.PullTimeout)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	for i, p := range pullers {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			got, err := p.pull(ctx, img.repo, img.byTag(), img.digest)
			lat[i] = time.Since(t0)
			if err == nil && got != img.size {
				err = fmt.Errorf("read %d bytes, want %d", got, img.size)
			}
			errs[i] = err
			p.close()
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return time.Since(t0), lat, errors.Join(errs...)
}

// runColdConcurrent has n clients pull the same image at once from a connected registry with an empty cache,
// and counts what the parent serves.
func (b *bench) runColdConcurrent(ctx context.Context) error {
	for _, v := range b.o.ColdVariants {
		if err := b.coldConcurrentVariant(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) coldConcurrentVariant(ctx context.Context, v variant) error {
	for _, n := range b.o.ColdClients {
		byImage := map[*testImage]*concurrentResult{}
		for _, img := range b.images {
			r := &concurrentResult{image: img, clients: n, variant: v.name}
			byImage[img] = r
			b.res.coldConcurrent = append(b.res.coldConcurrent, r)
		}
		for run := 0; run < b.o.Runs; run++ {
			b.e.logf("concurrent cold pulls (%s): %d clients, run %d of %d", v.name, n, run+1, b.o.Runs)
			cr, err := b.e.startConnected(ctx, v, filepath.Join(b.o.Dir, "cr"))
			if err != nil {
				return err
			}
			for _, img := range b.images {
				r := byImage[img]
				b.e.parent.settle(100*time.Millisecond, 2*time.Second)
				_, mark := b.e.parent.traffic(0)
				wall, lat, err := b.concurrent(ctx, cr.host, img, n)
				if err != nil {
					r.errs = append(r.errs, err)
					continue
				}
				if err := cr.waitStored(img, 60*time.Second); err != nil {
					r.errs = append(r.errs, err)
				}
				b.e.parent.settle(200*time.Millisecond, 5*time.Second)
				t, _ := b.e.parent.traffic(mark)
				r.wall = append(r.wall, wall)
				r.latencies = append(r.latencies, lat...)
				r.parentBlobs = append(r.parentBlobs, t.sent(b.sizes))
				r.parentLogged = append(r.parentLogged, t.blobBytes)
				r.parentReqs = append(r.parentReqs, t.requests)
			}
			for _, line := range cr.gateLog() {
				b.e.logf("parent gate (%s, %d clients): %s", v.name, n, line)
			}
			cr.remove()
		}
	}
	return ctx.Err()
}

// runWarmConcurrent measures throughput of 1, 10, 50 clients on a warm cache.
func (b *bench) runWarmConcurrent(ctx context.Context) error {
	v := b.o.Variants[len(b.o.Variants)-1]
	cr, err := b.e.startConnected(ctx, v, filepath.Join(b.o.Dir, "cr"))
	if err != nil {
		return err
	}
	defer cr.remove()
	for _, img := range b.images {
		if _, _, err := b.pullOnce(ctx, cr.host, false, img, img.byTag(), b.o.PullTimeout); err != nil {
			return fmt.Errorf("warming the cache: %w", err)
		}
		if err := cr.waitStored(img, 30*time.Second); err != nil {
			return err
		}
	}
	for _, n := range b.o.WarmClients {
		for _, img := range b.images {
			r := &concurrentResult{image: img, clients: n, variant: v.name}
			b.res.warmConcurrent = append(b.res.warmConcurrent, r)
			for run := 0; run < b.o.Runs; run++ {
				b.e.logf("warm concurrency: %s, %d clients, run %d of %d", img.repo, n, run+1, b.o.Runs)
				_, mark := b.e.parent.traffic(0)
				wall, lat, err := b.concurrent(ctx, cr.host, img, n)
				if err != nil {
					r.errs = append(r.errs, err)
					continue
				}
				b.e.parent.settle(50*time.Millisecond, time.Second)
				t, _ := b.e.parent.traffic(mark)
				r.wall = append(r.wall, wall)
				r.latencies = append(r.latencies, lat...)
				r.parentBlobs = append(r.parentBlobs, t.sent(b.sizes))
				r.parentLogged = append(r.parentLogged, t.blobBytes)
				r.parentReqs = append(r.parentReqs, t.requests)
			}
		}
	}
	return ctx.Err()
}

// gateCooldown is the parent gate's default --cooldown.
const gateCooldown = 10 * time.Second

// runOutage measures pulls of cached content, by tag and by digest, while the parent is hung (SIGSTOP after
// the registry has connections to it), refuses connections (stopped), is silent (a listener that accepts and
// never answers), and after the connected registry restarted while the parent is silent.
func (b *bench) runOutage(ctx context.Context) error {
	for _, v := range b.o.OutageVariants {
		if err := b.outageVariant(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) outageVariant(ctx context.Context, v variant) error {
	cr, err := b.e.startConnected(ctx, v, filepath.Join(b.o.Dir, "cr"))
	if err != nil {
		return err
	}
	defer cr.remove()
	img := b.multi
	warm := func() error {
		for _, ref := range []string{img.byTag(), img.byDigest()} {
			if _, _, err := b.pullOnce(ctx, cr.host, false, img, ref, b.o.PullTimeout); err != nil {
				return fmt.Errorf("warming the cache: %w", err)
			}
		}
		return cr.waitStored(img, 30*time.Second)
	}
	if err := warm(); err != nil {
		return err
	}
	first := true
	measure := func(mode string) {
		if !first {
			// Each case starts fresh: the parent gate refuses a parent it found silent for its cooldown, which
			// would make the next case look faster than a parent that just went silent.
			time.Sleep(gateCooldown + time.Second)
		}
		first = false
		for _, ref := range []string{"tag", "digest"} {
			s := &series{image: img, path: mode, variant: v.name, ref: ref}
			b.res.outage = append(b.res.outage, s)
			r := img.byTag()
			if ref == "digest" {
				r = img.byDigest()
			}
			for run := 0; run < b.o.Runs; run++ {
				b.e.logf("outage (%s): %s by %s, run %d of %d", v.name, mode, ref, run+1, b.o.Runs)
				s.add(b.pullOnce(ctx, cr.host, false, img, r, b.o.OutageTimeout))
			}
		}
	}

	// Hung: the registry holds keep-alive connections to the parent, whose process stops answering.
	if err := b.e.parent.waitReady(ctx, b.e.httpClient(), "https://"+b.e.parentHost+"/"); err != nil {
		return err
	}
	if err := warm(); err != nil {
		return err
	}
	if err := freeze(b.e.parent); err != nil {
		return err
	}
	measure("parent hung (SIGSTOP)")
	if err := thaw(b.e.parent); err != nil {
		return err
	}

	b.e.stopParent()
	measure("parent refuses connections")

	_, port, _ := net.SplitHostPort(b.e.parentHost)
	silent, err := startSilentParent(net.JoinHostPort(b.e.parentIP, port))
	if err != nil {
		return err
	}
	measure("parent silent (accepts, never answers)")
	cr.stop()
	if err := cr.start(ctx, b.e); err != nil {
		silent.stop()
		return err
	}
	measure("restarted while the parent is silent")
	silent.stop()
	return b.e.startParent(ctx)
}
