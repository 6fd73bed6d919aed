package registry_test

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// TestConcurrentColdPullsFetchEachLayerOnce pulls one image the cache lacks from several clients at once,
// through a link to the parent slow enough that every client asks for each layer while the first fetch of it is
// still running. Distribution alone fetches a blob once per concurrent request; with the chart's parent gate
// the parent must send each layer once.
func TestConcurrentColdPullsFetchEachLayerOnce(t *testing.T) {
	t.Parallel()
	const clients = 8
	registryBin := registryBinary(t)
	productBin := productBinary(t)
	ca := newTestCA(t)
	sc := byParentURL

	par := startParent(t, registryBin, ca, sc.user, sc.password)
	want := newMultiArchOf(t, 2<<10, 3<<20)
	parentRef, err := name.ParseReference(par.host + "/" + repo + ":" + tag)
	must(t, err)
	must(t, remote.WriteIndex(parentRef, want.index, newClient(ca, &authn.Basic{Username: sc.user, Password: sc.password}).opts...))

	// 4 MiB/s from the parent, shared by all connections: a 3 MiB layer takes at least 0.75 s to arrive.
	link, err := testenv.StartLink("127.0.0.1:0", par.host, 4<<20)
	must(t, err)
	t.Cleanup(link.Close)
	pd, _ := startConnectedRegistry(t, sc, link.Addr, registryBin, productBin, ca)
	crHost := "127.0.0.1:" + strconv.Itoa(pd.Port)

	_, mark := par.proc.accessLog(0)
	start := make(chan struct{})
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			<-start
			errs <- newClient(ca, nil).pull(crHost+"/"+repo+":"+tag, want)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a concurrent cold pull failed: %v", err)
		}
	}

	out := par.proc.out.String()[mark:]
	var total int
	for _, img := range want.manifests {
		for _, layer := range img.layers {
			gets := blobGETs(out, layer.String())
			total += gets
			size := want.layerSize(t, layer)
			if size >= 1<<20 && gets != 1 {
				t.Errorf("the parent sent layer %s (%d bytes) %d times for %d concurrent pulls, want once", layer, size, gets, clients)
			}
		}
	}
	t.Logf("%d concurrent cold pulls: the parent answered %d GETs for %d layers", clients, total, 2*len(want.manifests))
}

// blobGETs counts the parent's access-log lines of a GET of the blob with digest that sent bytes.
func blobGETs(log, digest string) int {
	re := regexp.MustCompile(`"GET \S+/blobs/` + regexp.QuoteMeta(digest) + ` HTTP/[0-9.]+" 200 ([0-9]+)`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		if m[1] != "0" {
			n++
		}
	}
	return n
}

// layerSize is the size of layer as the index holds it.
func (m *multiArch) layerSize(t *testing.T, layer fmt.Stringer) int64 {
	t.Helper()
	im, err := m.index.IndexManifest()
	must(t, err)
	for _, d := range im.Manifests {
		img, err := m.index.Image(d.Digest)
		must(t, err)
		mf, err := img.Manifest()
		must(t, err)
		for _, l := range mf.Layers {
			if l.Digest.String() == layer.String() {
				return l.Size
			}
		}
	}
	t.Fatalf("layer %s is in no manifest", layer)
	return 0
}
