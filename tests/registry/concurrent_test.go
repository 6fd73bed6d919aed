package registry_test

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestConcurrentColdPullsFetchEachLayerOnce pulls one image the cache lacks from several clients at once,
// through a link to the parent slow enough that every client asks for each layer while the first fetch of it is
// still running. Distribution alone fetches a blob once per concurrent request; with the chart's parent gate
// the parent must send each layer once.
func TestConcurrentColdPullsFetchEachLayerOnce(t *testing.T) {
	t.Parallel()
	const clients = 8
	registryBin := registryBinary(t)
	hooksBin := hooksBinary(t)
	ca := newTestCA(t)
	sc := byParentURL

	par := startParent(t, registryBin, ca, sc.user, sc.password)
	want := newMultiArchOf(t, 2<<10, 3<<20)
	parentRef, err := name.ParseReference(par.host + "/" + repo + ":" + tag)
	must(t, err)
	must(t, remote.WriteIndex(parentRef, want.index, newClient(ca, &authn.Basic{Username: sc.user, Password: sc.password}).opts...))

	// 4 MB/s from the parent: a 3 MiB layer takes about 0.8 s to arrive.
	link := startSlowLink(t, par.host, 4<<20)
	pd, _ := startConnectedRegistry(t, sc, link, registryBin, hooksBin, ca)
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

// startSlowLink relays TCP connections to target, sending target's bytes on at rate bytes per second per
// connection: the thin uplink of a remote site. TLS passes through untouched. It returns its host:port.
func startSlowLink(t *testing.T, target string, rate int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	const chunk = 16 << 10
	interval := time.Duration(float64(time.Second) * chunk / float64(rate))
	go func() {
		for {
			down, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			track(down)
			track(up)
			go func() {
				defer up.Close()
				_, _ = io.Copy(up, down)
			}()
			go func() {
				defer down.Close()
				buf := make([]byte, chunk)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						if _, werr := down.Write(buf[:n]); werr != nil {
							return
						}
						if n == chunk {
							time.Sleep(interval)
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	host := l.Addr().String()
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("the slow link listens on %s, not on loopback", host)
	}
	return host
}
