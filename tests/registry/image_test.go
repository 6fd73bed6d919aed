package registry_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// multiArch is what a pull of the test image must return.
type multiArch struct {
	index     v1.ImageIndex
	digest    v1.Hash
	manifests map[v1.Hash]imageDigests // by manifest digest
}

type imageDigests struct {
	platform string
	config   v1.Hash
	layers   []v1.Hash
}

// blobs lists every digest the registry stores as a blob: index, manifests, configs and layers.
func (m *multiArch) blobs() []v1.Hash {
	out := []v1.Hash{m.digest}
	for d, img := range m.manifests {
		out = append(out, d, img.config)
		out = append(out, img.layers...)
	}
	return out
}

// contentBlobs lists the configs and layers: what a registry serves as blobs, not as manifests.
func (m *multiArch) contentBlobs() []v1.Hash {
	var out []v1.Hash
	for _, img := range m.manifests {
		out = append(out, img.config)
		out = append(out, img.layers...)
	}
	return out
}

// newMultiArch builds an OCI index of a linux/amd64 and a linux/arm64 image with two small random layers each.
func newMultiArch(t *testing.T) *multiArch {
	t.Helper()
	return newMultiArchOf(t, 2<<10, 48<<10)
}

// newMultiArchOf builds an OCI index of a linux/amd64 and a linux/arm64 image with random layers of the sizes
// given.
func newMultiArchOf(t *testing.T, layerSizes ...int64) *multiArch {
	t.Helper()
	return newIndexOf(t, []string{"amd64", "arm64"}, layerSizes...)
}

// newIndexOf builds an OCI index of a linux image for each architecture given, with random layers of the sizes
// given.
func newIndexOf(t *testing.T, archs []string, layerSizes ...int64) *multiArch {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	want := &multiArch{manifests: map[v1.Hash]imageDigests{}}
	for _, arch := range archs {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		var layers []v1.Layer
		for _, size := range layerSizes {
			l, err := random.Layer(size, types.OCILayer)
			must(t, err)
			layers = append(layers, l)
		}
		img, err := mutate.AppendLayers(img, layers...)
		must(t, err)
		cfg, err := img.ConfigFile()
		must(t, err)
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", arch
		img, err = mutate.ConfigFile(img, cfg)
		must(t, err)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
		d, err := img.Digest()
		must(t, err)
		cn, err := img.ConfigName()
		must(t, err)
		entry := imageDigests{platform: "linux/" + arch, config: cn}
		for _, l := range layers {
			ld, err := l.Digest()
			must(t, err)
			entry.layers = append(entry.layers, ld)
		}
		want.manifests[d] = entry
	}
	d, err := idx.Digest()
	must(t, err)
	want.index, want.digest = idx, d
	return want
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// schemeGuard lets only requests of one scheme through, counting the others: go-containerregistry falls back
// to plain HTTP for 127.0.0.1, which would hide a registry that serves no TLS.
type schemeGuard struct {
	base    http.RoundTripper
	scheme  string
	refused atomic.Int32
}

func (g *schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != g.scheme {
		g.refused.Add(1)
		return nil, fmt.Errorf("test client refuses %s://%s%s: it speaks %s only", r.URL.Scheme, r.URL.Host, r.URL.Path, g.scheme)
	}
	return g.base.RoundTrip(r)
}

// client is a registry client that speaks only HTTPS and trusts only the test CA.
type client struct {
	guard *schemeGuard
	opts  []remote.Option
}

func newClient(ca *testCA, auth authn.Authenticator) *client {
	g := &schemeGuard{base: ca.transport(), scheme: "https"}
	if auth == nil {
		auth = authn.Anonymous
	}
	return &client{guard: g, opts: []remote.Option{
		remote.WithTransport(g),
		remote.WithAuth(auth),
		// No retries: a failure must show, not be papered over.
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1}),
	}}
}

// pull fetches ref (a tag or the index digest) with every manifest, config and layer, and checks each digest
// against want. go-containerregistry verifies every blob against its digest while reading it.
func (c *client) pull(ref string, want *multiArch) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	desc, err := remote.Get(r, c.opts...)
	if err != nil {
		return fmt.Errorf("getting %s: %w", ref, err)
	}
	if desc.Digest != want.digest {
		return fmt.Errorf("%s has digest %s, want the parent's %s", ref, desc.Digest, want.digest)
	}
	if desc.MediaType != types.OCIImageIndex {
		return fmt.Errorf("%s has media type %s, want %s", ref, desc.MediaType, types.OCIImageIndex)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(im.Manifests) != len(want.manifests) {
		return fmt.Errorf("%s lists %d manifests, want %d", ref, len(im.Manifests), len(want.manifests))
	}
	for _, m := range im.Manifests {
		w, ok := want.manifests[m.Digest]
		if !ok {
			return fmt.Errorf("%s lists manifest %s, which the parent's index does not", ref, m.Digest)
		}
		if m.Platform == nil || m.Platform.OS+"/"+m.Platform.Architecture != w.platform {
			return fmt.Errorf("%s: manifest %s has platform %v, want %s", ref, m.Digest, m.Platform, w.platform)
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			return err
		}
		if d, err := img.Digest(); err != nil || d != m.Digest {
			return fmt.Errorf("%s: manifest %s came back as %s (%v)", ref, m.Digest, d, err)
		}
		if _, err := img.RawConfigFile(); err != nil {
			return fmt.Errorf("%s: config of %s: %w", ref, w.platform, err)
		}
		if cn, err := img.ConfigName(); err != nil || cn != w.config {
			return fmt.Errorf("%s: config of %s is %s, want %s (%v)", ref, w.platform, cn, w.config, err)
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		if len(layers) != len(w.layers) {
			return fmt.Errorf("%s: %s has %d layers, want %d", ref, w.platform, len(layers), len(w.layers))
		}
		for i, l := range layers {
			d, err := l.Digest()
			if err != nil || d != w.layers[i] {
				return fmt.Errorf("%s: layer %d of %s is %s, want %s (%v)", ref, i, w.platform, d, w.layers[i], err)
			}
			rc, err := l.Compressed()
			if err != nil {
				return fmt.Errorf("%s: layer %s: %w", ref, d, err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("%s: reading layer %s: %w", ref, d, err)
			}
		}
	}
	if n := c.guard.refused.Load(); n > 0 {
		return fmt.Errorf("the client attempted %d plain-HTTP requests", n)
	}
	return nil
}

// waitBlobsStored waits until the filesystem storage under root holds every blob of want: Distribution
// commits a proxied blob to its cache after streaming it to the client.
func waitBlobsStored(t *testing.T, root string, want *multiArch) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var missing []string
		for _, d := range want.blobs() {
			p := filepath.Join(root, "docker", "registry", "v2", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				missing = append(missing, d.String())
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connected registry's storage %s lacks %d blobs 10s after the pull: %v", root, len(missing), missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
