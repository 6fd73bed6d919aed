package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/connected-registry/connected-registry/internal/evict"
	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
	"github.com/connected-registry/connected-registry/internal/testing/apistub"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
)

const (
	cacheEvictCronJob = "cr-connected-registry-cache-evict"
	cachePullsCM      = "cr-connected-registry-cache-pulls"
	cacheStatusCM     = "cr-connected-registry-cache-status"
	cacheEvictConfig  = "cr-connected-registry-cache-evict-config"
)

// indexOfLayers builds an OCI index of one linux/amd64 image made of exactly the layers given, with a config
// of its own (label id), so that two images may share a layer and nothing else.
func indexOfLayers(t *testing.T, id string, layers ...v1.Layer) *multiArch {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	must(t, err)
	cfg, err := img.ConfigFile()
	must(t, err)
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Labels = map[string]string{"id": id}
	img, err = mutate.ConfigFile(img, cfg)
	must(t, err)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{
		Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}},
	})
	want := &multiArch{index: idx, manifests: map[v1.Hash]imageDigests{}}
	d, err := img.Digest()
	must(t, err)
	cn, err := img.ConfigName()
	must(t, err)
	entry := imageDigests{platform: "linux/amd64", config: cn}
	for _, l := range layers {
		ld, err := l.Digest()
		must(t, err)
		entry.layers = append(entry.layers, ld)
	}
	want.manifests[d] = entry
	want.digest, err = idx.Digest()
	must(t, err)
	return want
}

func layerOf(t *testing.T, size int64) (v1.Layer, string) {
	t.Helper()
	l, err := random.Layer(size, types.OCILayer)
	must(t, err)
	d, err := l.Digest()
	must(t, err)
	return l, d.String()
}

// blobBytes sums the sizes of the blob data files under a filesystem storage root: what the cache holds on its
// volume.
func blobBytes(t *testing.T, root string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(root, "docker", "registry", "v2", "blobs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "data" {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	must(t, err)
	return n
}

func blobStored(root, digest string) bool {
	hex := strings.TrimPrefix(digest, "sha256:")
	_, err := os.Stat(filepath.Join(root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data"))
	return err == nil
}

// TestCacheEviction bounds the chart's registry pod's cache (registry.cache.maxSize) and runs the eviction as the
// chart's CronJob does: its own Distribution on the cache's storage (the rendered configuration), the product
// binary's evict with the CronJob's args, Distribution's garbage-collect, and evict --measure; the pull records
// and the status on a stand-in API server, written by the parent gate from the registry's real notifications.
//
// Four images through the ACR-like parent: synced:v1 (pre-sync keeps it; pulled first, so the oldest), old:1,
// mid:1 and new:1; old:1 and new:1 share a layer. The bound makes the eviction take old:1 (which frees only its own
// layer, the shared one stays with new:1) and then mid:1. It checks that:
//   - the blobs on the volume shrink by the evicted images' own layers, measured as bytes on disk;
//   - the shared layer and the pre-synced image stay, and pulling them fetches nothing from the parent;
//   - a pull of an evicted image fetches its layer again from the parent (counted at the parent's storage host);
//   - a client's DELETE on the registry is still refused, and deletes nothing.
func TestCacheEviction(t *testing.T) {
	t.Parallel()
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	ctx := context.Background()
	par := startACRParent(t, registryBin, ca)

	shared, sharedDigest := layerOf(t, 1<<20)
	oldOwn, oldDigest := layerOf(t, 2<<20)
	midOwn, midDigest := layerOf(t, 2<<20)
	newOwn, newDigest := layerOf(t, 2<<20)
	syncedOwn, syncedDigest := layerOf(t, 1<<20)
	images := map[string]*multiArch{
		"cache/synced:v1": indexOfLayers(t, "synced", syncedOwn),
		"cache/old:1":     indexOfLayers(t, "old", shared, oldOwn),
		"cache/mid:1":     indexOfLayers(t, "mid", midOwn),
		"cache/new:1":     indexOfLayers(t, "new", shared, newOwn),
	}
	for ref, img := range images {
		must(t, par.Push(ctx, ref, img.index))
	}

	api := apistub.Start()
	t.Cleanup(api.Close)
	dir := t.TempDir()
	kubeconfig, err := api.WriteKubeconfig(dir)
	must(t, err)
	// 8 MiB and a little of layers; 5.5 MiB makes the eviction take old:1 (2 MiB freed) and mid:1 (2 MiB more).
	res := renderCache(t, par, ca, map[string]any{
		"registry.cache.maxSize": "5632Ki",
		"sync": map[string]any{"enabled": true, "repositories": []any{
			map[string]any{"name": "cache/synced", "tags": []any{"v1"}},
		}},
	})
	for _, name := range []string{cachePullsCM, cacheStatusCM} {
		cm, ok := res.Find("ConfigMap", name)
		if !ok {
			t.Fatalf("the chart renders no ConfigMap %s", name)
		}
		api.PutConfigMap(configMapOf(t, cm.Object))
	}
	pd := startCachePod(t, res, registryBin, productBin, ca, []string{
		"KUBECONFIG=" + kubeconfig, "CONNECTED_REGISTRY_NAMESPACE=" + syncNamespace,
		// Write the pull records at once rather than every minute.
		"CONNECTED_REGISTRY_GATE_PULLS_FLUSH=200ms",
		// Spooled blobs are not served again after their fetch ends, so a refetch shows at the parent however soon
		// after the first pull it comes.
		"CONNECTED_REGISTRY_GATE_LINGER=0s",
	})
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)
	cl := newClient(ca, nil)

	// Pulls a second apart: the records keep seconds.
	for _, ref := range []string{"cache/synced:v1", "cache/old:1", "cache/mid:1", "cache/new:1"} {
		must(t, cl.pull(crHost+"/"+ref, images[ref]))
		time.Sleep(1100 * time.Millisecond)
	}
	root := pd.DataDir()
	for _, img := range images {
		waitBlobsStored(t, root, img)
	}
	waitPullRecords(t, api, []string{"cache/synced:v1", "cache/old:1", "cache/mid:1", "cache/new:1"})

	// A client's DELETE is refused: the registry the nodes reach stays read-only.
	req, err := http.NewRequest(http.MethodDelete, "https://"+crHost+"/v2/cache/mid/manifests/"+images["cache/mid:1"].digest.String(), nil)
	must(t, err)
	resp, err := (&http.Client{Transport: ca.transport()}).Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("a client's DELETE of a manifest got %s, want 405 Method Not Allowed", resp.Status)
	}

	before := blobBytes(t, root)
	ej := newEvictJob(t, res, registryBin, productBin, root, kubeconfig)
	ej.run(t)
	after := blobBytes(t, root)
	t.Logf("blobs on the volume: %d bytes before the eviction, %d after", before, after)

	cm := api.ConfigMap(syncNamespace, cacheStatusCM)
	var st evict.Status
	must(t, json.Unmarshal([]byte(cm.Data[evict.StatusKey]), &st))
	t.Logf("status: %s", cm.Data[evict.SummaryKey])
	var evicted []string
	for _, img := range st.Evicted {
		evicted = append(evicted, img.Repository+":"+strings.Join(img.Tags, ","))
	}
	if strings.Join(evicted, " ") != "cache/old:1 cache/mid:1" {
		t.Errorf("the eviction took %v, want cache/old:1 then cache/mid:1 (least recently pulled; synced:v1 kept by pre-sync)", evicted)
	}
	if st.After == 0 || st.After > st.MaxSize || st.Before <= st.MaxSize {
		t.Errorf("the status says %d bytes before and %d after for a bound of %d", st.Before, st.After, st.MaxSize)
	}
	freed := before - after
	if freed < 4<<20 {
		t.Errorf("the eviction freed %d bytes of blobs on the volume, want at least old:1's and mid:1's own layers (4 MiB)", freed)
	}
	for name, d := range map[string]string{"the evicted old:1's own layer": oldDigest, "the evicted mid:1's layer": midDigest} {
		if blobStored(root, d) {
			t.Errorf("%s %s is still on the volume", name, d)
		}
	}
	for name, d := range map[string]string{"the layer old:1 shared with new:1": sharedDigest, "new:1's layer": newDigest, "the pre-synced image's layer": syncedDigest} {
		if !blobStored(root, d) {
			t.Errorf("%s %s was collected", name, d)
		}
	}

	// What stayed is served without the parent; an evicted image comes again from it.
	mark := par.Log()
	for _, ref := range []string{"cache/synced:v1", "cache/new:1"} {
		if err := cl.pull(crHost+"/"+ref, images[ref]); err != nil {
			t.Errorf("pulling %s after the eviction: %v", ref, err)
		}
	}
	if f := par.Log().Since(mark).BlobFetches(); len(f) != 0 {
		t.Errorf("pulling the images the eviction kept fetched blobs from the parent: %v", f)
	}
	mark = par.Log()
	if err := cl.pull(crHost+"/cache/old:1", images["cache/old:1"]); err != nil {
		t.Fatalf("pulling the evicted cache/old:1: %v", err)
	}
	// The parent records a fetch once its body is sent, which the registry stores as it streams.
	waitBlobsStored(t, root, images["cache/old:1"])
	var f map[string]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if f = par.Log().Since(mark).BlobFetches(); f[oldDigest] > 0 {
			break
		}
	}
	if f[oldDigest] != 1 || f[sharedDigest] != 0 {
		t.Errorf("pulling the evicted old:1 fetched its own layer %d times and the shared layer %d times from the parent, want once and never:\n%s",
			f[oldDigest], f[sharedDigest], par.Log().Since(mark))
	}
}

func configMapOf(t *testing.T, obj map[string]any) *corev1.ConfigMap {
	t.Helper()
	raw, err := json.Marshal(obj)
	must(t, err)
	cm := &corev1.ConfigMap{}
	must(t, json.Unmarshal(raw, cm))
	return cm
}

// renderCache renders the chart for the ACR-like parent, with a certificate of the test CA for the registry and
// the values given.
func renderCache(t *testing.T, par *acrparent.Parent, ca *testCA, values map[string]any) *chartrender.Result {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "cr-connected-registry", []net.IP{net.ParseIP(clusterIP)}, []string{"cr-connected-registry"})
	vals := map[string]any{
		"connectionString":         par.ConnectionString("cr"),
		"tls.crt":                  base64.StdEncoding.EncodeToString(certPEM),
		"tls.key":                  base64.StdEncoding.EncodeToString(keyPEM),
		"tls.cacrt":                base64.StdEncoding.EncodeToString(ca.CertPEM),
		"registry.parent.caBundle": string(ca.CertPEM),
	}
	for k, v := range values {
		vals[k] = v
	}
	res, err := chartrender.Render(chartrender.Options{
		Set:    []string{"service.clusterIP=" + clusterIP, "cert-manager.enabled=false", "cert-manager.install=false"},
		Values: vals,
	})
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return res
}

// startCachePod runs the chart's registry pod with productEnv added to the product's containers.
func startCachePod(t *testing.T, res *chartrender.Result, registryBin, productBin string, ca *testCA, productEnv []string) *pod {
	t.Helper()
	return startCachePodIn(t, t.TempDir(), res, registryBin, productBin, ca, productEnv)
}

// startCachePodIn is startCachePod in dir, whose volumes/data may be a volume the test prepared.
func startCachePodIn(t *testing.T, dir string, res *chartrender.Result, registryBin, productBin string, ca *testCA, productEnv []string) *pod {
	t.Helper()
	p, err := podemu.New(res, podemu.Options{Dir: dir, RegistryBin: registryBin, ProductBin: productBin,
		Port: freePort(t), Logf: t.Logf, ProductEnv: productEnv})
	must(t, err)
	pd := &pod{Pod: p}
	t.Cleanup(func() {
		for _, sc := range pd.sidecars {
			sc.stop(t)
		}
	})
	cr := pd.start(t)
	cr.waitReady(t, &http.Client{Transport: ca.transport(), Timeout: 5 * time.Second}, pd.readinessURL(t))
	return pd
}

// waitPullRecords waits until the parent gate has written a pull of every tag of refs to the pull records.
func waitPullRecords(t *testing.T, api *apistub.Server, refs []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var missing []string
		cm := api.ConfigMap(syncNamespace, cachePullsCM)
		var p evict.Pulls
		if cm != nil && cm.Data[evict.PullsKey] != "" {
			must(t, json.Unmarshal([]byte(cm.Data[evict.PullsKey]), &p))
		}
		for _, ref := range refs {
			if _, ok := p.Last[ref]; !ok {
				missing = append(missing, ref)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the parent gate recorded no pull of %v in %s:\n%v", missing, cachePullsCM, cm)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// evictJob is the chart's cache-eviction CronJob's pod, run as processes: its registry on a free port of
// 127.0.0.1 with the rendered configuration on the pod's cache directory, and its product and Distribution
// containers with their rendered args.
type evictJob struct {
	registryBin, productBin string
	config                  string
	addr                    string
	kubeconfig              string
	evictArgs, gcArgs       []string
	measureArgs             []string
}

func newEvictJob(t *testing.T, res *chartrender.Result, registryBin, productBin, root, kubeconfig string) *evictJob {
	t.Helper()
	cm, ok := res.Find("ConfigMap", cacheEvictConfig)
	if !ok {
		t.Fatalf("the chart renders no ConfigMap %s", cacheEvictConfig)
	}
	config := configMapOf(t, cm.Object).Data["config.yml"]
	const rendered = "127.0.0.1:5002"
	e := &evictJob{registryBin: registryBin, productBin: productBin, kubeconfig: kubeconfig,
		addr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	for from, to := range map[string]string{"rootdirectory: /var/lib/registry": "rootdirectory: " + root, "addr: " + rendered: "addr: " + e.addr} {
		if !strings.Contains(config, from) {
			t.Fatalf("the eviction's registry configuration lacks %q:\n%s", from, config)
		}
		config = strings.ReplaceAll(config, from, to)
	}
	for _, want := range []string{"delete:\n    enabled: true", "filesystem:"} {
		if !strings.Contains(config, want) {
			t.Fatalf("the eviction's registry configuration lacks %q:\n%s", want, config)
		}
	}
	if strings.Contains(config, "proxy:") || strings.Contains(config, "readonly") {
		t.Fatalf("the eviction's registry is a proxy or read-only:\n%s", config)
	}
	e.config = filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, e.config, []byte(config), 0o644)

	cj, ok := res.Find("CronJob", cacheEvictCronJob)
	if !ok {
		t.Fatalf("the chart renders no CronJob %s", cacheEvictCronJob)
	}
	var job struct {
		Spec struct {
			JobTemplate struct {
				Spec struct {
					Template struct {
						Spec corev1.PodSpec
					}
				}
			} `json:"jobTemplate"`
		}
	}
	raw, err := json.Marshal(cj.Object)
	must(t, err)
	must(t, json.Unmarshal(raw, &job))
	spec := job.Spec.JobTemplate.Spec.Template.Spec
	var names []string
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		names = append(names, c.Name)
		args := slicesReplace(c.Args, "--registry=http://"+rendered, "--registry=http://"+e.addr)
		args = slicesReplace(args, "/etc/distribution/config.yml", e.config)
		switch c.Name {
		case "evict":
			e.evictArgs = append(args, "--kubeconfig="+kubeconfig)
		case "garbage-collect":
			e.gcArgs = args
		case "measure":
			e.measureArgs = append(args, "--kubeconfig="+kubeconfig)
		}
	}
	if strings.Join(names, ",") != "registry,evict,garbage-collect,measure" {
		t.Fatalf("the eviction pod's containers are %v, want registry, evict, garbage-collect, measure", names)
	}
	return e
}

func slicesReplace(args []string, from, to string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, from, to)
	}
	return out
}

// run runs the Job's pod: its registry beside the three steps, in order.
func (e *evictJob) run(t *testing.T) {
	t.Helper()
	reg := startProcess(t, "eviction registry", e.registryBin, []string{"serve", e.config}, []string{"PATH=" + os.Getenv("PATH"), "OTEL_TRACES_EXPORTER=none"})
	defer reg.stop(t)
	for _, step := range []struct {
		name string
		bin  string
		args []string
	}{
		{"evict", e.productBin, e.evictArgs},
		{"garbage-collect", e.registryBin, e.gcArgs},
		{"measure", e.productBin, e.measureArgs},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, step.bin, step.args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OTEL_TRACES_EXPORTER=none"}
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("the eviction's %s failed: %v\n%s", step.name, err, tail(string(out), 4000))
		}
		t.Logf("eviction %s: %s", step.name, tail(string(out), 1500))
	}
}
