package registry_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mountSmallVolume mounts a tmpfs of size (a mount(8) size such as 6m) at dir, or skips the test where mounting
// is not allowed (it needs root).
func mountSmallVolume(t *testing.T, dir, size string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o777))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0777", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("a size-limited volume needs mount -t tmpfs (root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestFullCacheVolume runs the chart's registry pod (no registry.cache.maxSize) on a 6 MiB volume and pulls an
// image that fits and one whose 8 MiB layer does not:
//   - the image that does not fit fails at once, twice, without a byte of its layer leaving the parent (Distribution
//     alone streams it to the client while its write fails, cutting the client's copy short on every retry);
//   - the parent gate logs it once, naming registry.cache.maxSize and pvc.storageRequest;
//   - the cached image is served as before.
func TestFullCacheVolume(t *testing.T) {
	t.Parallel()
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	ctx := context.Background()
	par := startACRParent(t, registryBin, ca)
	small, _ := layerOf(t, 1<<20)
	big, bigDigest := layerOf(t, 8<<20)
	images := map[string]*multiArch{
		"full/small:1": indexOfLayers(t, "small", small),
		"full/big:1":   indexOfLayers(t, "big", big),
	}
	for ref, img := range images {
		must(t, par.Push(ctx, ref, img.index))
	}

	dir := t.TempDir()
	mountSmallVolume(t, filepath.Join(dir, "volumes", "data"), "6m")
	res := renderCache(t, par, ca, map[string]any{"pvc.storageRequest": "6Mi"})
	pd := startCachePodIn(t, dir, res, registryBin, productBin, ca, nil)
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)
	cl := newClient(ca, nil)

	must(t, cl.pull(crHost+"/full/small:1", images["full/small:1"]))
	waitBlobsStored(t, pd.DataDir(), images["full/small:1"])

	mark := par.Log()
	for i := range 2 {
		err := cl.pull(crHost+"/full/big:1", images["full/big:1"])
		if err == nil {
			t.Fatalf("pull %d of an image larger than the free space succeeded", i+1)
		}
		t.Logf("pull %d of full/big:1: %v", i+1, err)
		if strings.Contains(err.Error(), "unexpected EOF") {
			t.Errorf("pull %d of full/big:1 was cut short mid-stream (%v), want a refusal before any byte", i+1, err)
		}
	}
	if n := par.Log().Since(mark).BlobFetches()[bigDigest]; n != 0 {
		t.Errorf("the parent sent the layer that cannot be stored %d times, want never", n)
	}
	gateLog := pd.sidecarOutput("parent-gate")
	t.Logf("the parent gate:\n%s", gateLog)
	if n := strings.Count(gateLog, "the registry's cache volume is full"); n != 1 {
		t.Errorf("the parent gate reported the full volume %d times, want once:\n%s", n, gateLog)
	}
	for _, want := range []string{"registry.cache.maxSize", "pvc.storageRequest (6Mi)"} {
		if !strings.Contains(gateLog, want) {
			t.Errorf("the parent gate's report does not name %s:\n%s", want, gateLog)
		}
	}

	if err := cl.pull(crHost+"/full/small:1", images["full/small:1"]); err != nil {
		t.Errorf("the cached image is no longer served on a full volume: %v", err)
	}
}
