package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/connected-registry/connected-registry/internal/storecheck"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// storageCase is one storage layout of the storage benchmark (issue 18).
type storageCase struct {
	key      string // "a", "b", …
	name     string
	storage  string // "pvc" or "azure"
	replicas int
	// peers says whether the parent gates route each blob to its owner replica (the chart's setting with more
	// than one replica); false runs each replica's gate on its own.
	peers bool
}

// storageCases are the layouts: the PVC case first, which the others are compared with.
func storageCases() []storageCase {
	return []storageCase{
		{key: "a", name: "1 replica, filesystem (PVC)", storage: "pvc", replicas: 1},
		{key: "b", name: "1 replica, Azure Blob", storage: "azure", replicas: 1},
		{key: "c", name: "3 replicas, Azure Blob, peer routing on (chart)", storage: "azure", replicas: 3, peers: true},
		{key: "d", name: "3 replicas, Azure Blob, peer routing off (anchor)", storage: "azure", replicas: 3},
	}
}

// storageResult is what one case measured, per run.
type storageResult struct {
	c storageCase
	// wall is from the first client's first request to the last client's last byte.
	wall []time.Duration
	// cached is from the same start until the store holds every blob of the image.
	cached []time.Duration
	// parentBlobs are the bytes of the blobs the parent began to send (its access log, whole blobs by size);
	// uplink the bytes that crossed the link from the parent (TLS, manifests and token-less requests included).
	parentBlobs, uplink []int64
	errs                []error
}

// storageContainerSecret is the Secret with the Azure account key, which the user creates.
const storageContainerSecret = "bench-blob"

// storageImage builds an image of layers large seeded layers of size bytes, written under dir, and four small
// ones (4 kB to 2 MB): the shape of a typical application image, a few big layers and several small.
func storageImage(dir string, layers int, size int64, seed uint64) (*testImage, error) {
	var ls []v1.Layer
	for i := range layers {
		l, err := newFileLayer(filepath.Join(dir, fmt.Sprintf("storage-layer-%d.bin", i)), size, seed+uint64(i))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	var small int64
	for i, n := range []int64{4 << 10, 64 << 10, 512 << 10, 2 << 20} {
		var b strings.Builder
		if err := seededBytes(&b, n, seed+100+uint64(i)); err != nil {
			return nil, err
		}
		ls = append(ls, static.NewLayer([]byte(b.String()), types.OCIUncompressedLayer))
		small += n
	}
	img, err := platformImage("amd64", ls...)
	if err != nil {
		return nil, err
	}
	ti := &testImage{label: fmt.Sprintf("%d × %s + 4 small layers (%s)", layers, humanBytes(size), humanBytes(small)),
		repo: "bench/storage", tag: "v1", image: img}
	return ti, ti.measure()
}

// spreadHost is the replica client i pulls from: round-robin, as a Service spreads new connections.
func spreadHost(hosts []string, i int) string { return hosts[i%len(hosts)] }

// replicaIPs are n loopback addresses of one /24 chosen at random, one per replica, as pod IPs: every gate's peer
// port listens on its own address, at the same port, as in a cluster.
func replicaIPs(n int) []string {
	a, b := 2+rand.IntN(250), rand.IntN(256)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.%d.%d.%d", a, b, i+1)
	}
	return out
}

// peerArgs rewrites the parent gate's peer flags for replicas on this host: the peers' headless Service name
// becomes the replicas' addresses (no DNS lists them here), and the peer port moves to port of the pod's address;
// without peer routing, both flags go, and each replica's gate fetches every blob itself.
func peerArgs(args []string, ips []string, podIP string, port int, peers bool) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--peers="):
			if peers {
				out = append(out, "--peers="+strings.Join(ips, ","))
			}
		case strings.HasPrefix(a, "--peer-listen="):
			if peers {
				out = append(out, "--peer-listen="+net.JoinHostPort(podIP, strconv.Itoa(port)))
			}
		default:
			out = append(out, a)
		}
	}
	return out
}

// runStorage pulls the storage image concurrently and cold, StorageClients clients spread over the replicas, for
// every storage case, through a link of UplinkRate bytes per second to the parent; the cases take turns in each
// run, each with an empty cache (a new directory or a new container).
func (b *bench) runStorage(ctx context.Context) error {
	azurite := testenv.AzuriteBin(chartrender.RepoRoot())
	if _, err := os.Stat(azurite); err != nil {
		return fmt.Errorf("azurite is missing at %s: run bash ci/azurite.sh", azurite)
	}
	link, via, err := b.startUplink()
	if err != nil {
		return err
	}
	defer link.Close()

	img := b.storage
	for _, c := range storageCases() {
		b.res.storage = append(b.res.storage, &storageResult{c: c})
	}
	for run := 0; run < b.o.Runs; run++ {
		for _, r := range b.res.storage {
			b.e.logf("storage: %s, %d clients, run %d of %d", r.c.name, b.o.StorageClients, run+1, b.o.Runs)
			if err := b.storageRun(ctx, azurite, link, via, img, r); err != nil {
				return fmt.Errorf("%s: %w", r.c.name, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// storageRun starts case r's replicas with an empty cache (on object storage, a new Azurite from azurite), pulls
// img cold with StorageClients clients, waits until the cache holds it, and records what the parent and the uplink
// sent. The cache is removed afterwards: the machine's disk holds one case's copy at a time.
func (b *bench) storageRun(ctx context.Context, azurite string, link *testenv.Link, via string, img *testImage, r *storageResult) error {
	c := r.c
	v := variant{name: c.name, set: []string{"replicas=" + strconv.Itoa(c.replicas)}}
	var blobs *container.Client
	opts := podemu.Options{}
	if c.storage == "azure" {
		dir := filepath.Join(b.o.Dir, "azurite")
		az, err := testenv.StartAzurite(ctx, azurite, "127.0.0.1", dir, nil)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		defer az.Stop()
		cont := "registry"
		if blobs, err = createContainer(ctx, az, cont); err != nil {
			return err
		}
		v.set = append(v.set, "storage.type=azure", "storage.azure.accountName="+az.Account, "storage.azure.container="+cont,
			"storage.azure.serviceURL="+az.Endpoint, "storage.azure.credentialsSecret="+storageContainerSecret)
		opts.External = map[string]map[string]string{storageContainerSecret: {"accountkey": az.Key}}
	}
	res, err := b.e.renderFor(v, via)
	if err != nil {
		return err
	}
	ips := replicaIPs(c.replicas)
	peerPort, err := freePortOn(ips[0])
	if err != nil {
		return err
	}
	var replicas []*connected
	defer func() {
		if b.o.keepDir {
			b.keepLogs(c.key, replicas)
		}
		for _, cr := range replicas {
			for _, line := range cr.gateLog() {
				b.e.logf("parent gate (%s): %s", c.name, line)
			}
			cr.remove()
		}
	}()
	for i, ip := range ips {
		o := opts
		o.PodIP = ip
		cr, err := b.e.startPod(ctx, res, v, filepath.Join(b.o.Dir, fmt.Sprintf("replica-%d", i)), o, func(sc *podemu.Command) {
			sc.Args = peerArgs(sc.Args, ips, ip, peerPort, c.peers)
		})
		if cr != nil && cr.proc != nil {
			replicas = append(replicas, cr)
		}
		if err != nil {
			return fmt.Errorf("replica %d: %w", i, err)
		}
	}
	hosts := make([]string, len(replicas))
	for i, cr := range replicas {
		hosts[i] = cr.host
	}
	b.e.parent.settle(100*time.Millisecond, 2*time.Second)
	_, mark := b.e.parent.traffic(0)
	sentBefore := link.Sent()
	start := time.Now()
	wall, _, err := b.concurrentSpread(ctx, hosts, img, b.o.StorageClients)
	if err != nil {
		r.errs = append(r.errs, err)
		return nil
	}
	if blobs != nil {
		err = waitStoredBlob(ctx, blobs, img, 2*time.Minute)
	} else {
		err = replicas[0].waitStored(img, 2*time.Minute)
	}
	if err != nil {
		r.errs = append(r.errs, err)
	}
	cached := time.Since(start)
	b.e.parent.settle(200*time.Millisecond, 5*time.Second)
	t, _ := b.e.parent.traffic(mark)
	r.wall = append(r.wall, wall)
	r.cached = append(r.cached, cached)
	r.parentBlobs = append(r.parentBlobs, t.sent(b.sizes))
	r.uplink = append(r.uplink, link.Sent()-sentBefore)
	return nil
}

// createContainer makes the Azure Blob container name in az, which the chart's preflight would create, and returns
// a client of it.
func createContainer(ctx context.Context, az *testenv.ObjectStore, name string) (*container.Client, error) {
	s, err := storecheck.NewAzure(storecheck.Azure{AccountName: az.Account, AccountKey: az.Key, Container: name, ServiceURL: az.Endpoint})
	if err != nil {
		return nil, err
	}
	if err := s.Create(ctx); err != nil {
		return nil, fmt.Errorf("creating the container %s: %w", name, err)
	}
	cred, err := azblob.NewSharedKeyCredential(az.Account, az.Key)
	if err != nil {
		return nil, err
	}
	return container.NewClientWithSharedKeyCredential(strings.TrimSuffix(az.Endpoint, "/")+"/"+name, cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{Telemetry: policy.TelemetryOptions{Disabled: true}}})
}

// waitStoredBlob waits until the container holds every blob of img where Distribution's azure driver keeps it: a
// proxied blob is committed after it was streamed to the client.
func waitStoredBlob(ctx context.Context, c *container.Client, img *testImage, timeout time.Duration) error {
	return waitBlobs(ctx, img, timeout, "the container", func(d v1.Hash) bool {
		key := fmt.Sprintf("docker/registry/v2/blobs/%s/%s/%s/data", d.Algorithm, d.Hex[:2], d.Hex)
		_, err := c.NewBlobClient(key).GetProperties(ctx, nil)
		return err == nil
	})
}

// freePortOn returns a port free on ip.
func freePortOn(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("a port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errStorageAlone refuses the storage section with others: it writes a report of its own.
var errStorageAlone = errors.New("section storage runs alone (make bench-storage): it writes a report of its own")

// setupStorage generates the storage image under dir, starts the parent and pushes the image to it.
func (b *bench) setupStorage(ctx context.Context, dir string) error {
	o := b.o
	b.e.logf("generating an image of %d × %s seeded layers and 4 small ones", o.StorageLayers, humanBytes(o.StorageLayerSize))
	var err error
	if b.storage, err = storageImage(dir, o.StorageLayers, o.StorageLayerSize, 7); err != nil {
		return err
	}
	if b.sizes, err = blobSizes(b.storage); err != nil {
		return err
	}
	if err := b.e.startParent(ctx); err != nil {
		return err
	}
	if err := b.e.push(b.storage); err != nil {
		return fmt.Errorf("pushing %s to the parent: %w", b.storage.repo, err)
	}
	b.e.logf("parent %s seeded", b.e.parentHost)
	return nil
}

// keepLogs writes what case key's replicas (registry and sidecars) and the parent printed into logs/ of the working
// directory, which --keep keeps: which replica fetched what, and when.
func (b *bench) keepLogs(key string, replicas []*connected) {
	dir := filepath.Join(b.o.Dir, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.e.logf("keeping the logs: %v", err)
		return
	}
	write := func(name string, p *process) {
		if err := os.WriteFile(filepath.Join(dir, name+".log"), []byte(p.out.String()), 0o644); err != nil {
			b.e.logf("keeping the logs: %v", err)
		}
	}
	for i, cr := range replicas {
		write(fmt.Sprintf("%s-replica-%d-registry", key, i), cr.proc)
		for _, sc := range cr.sidecars {
			write(fmt.Sprintf("%s-replica-%d-%s", key, i, strings.ReplaceAll(sc.name, " ", "-")), sc)
		}
	}
	write(key+"-parent", b.e.parent)
}
