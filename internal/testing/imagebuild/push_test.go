package imagebuild

import (
	"context"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"
)

// testRegistry is an in-process registry; requests counts what reached it.
type testRegistry struct {
	srv      *httptest.Server
	host     string
	pool     *x509.CertPool // trusts exactly the server's certificate
	requests atomic.Int32
}

// newTestRegistry starts go-containerregistry's registry over TLS (or plain HTTP), optionally behind HTTP Basic
// authentication, as Distribution with htpasswd is.
func newTestRegistry(t *testing.T, useTLS bool, user, password string) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		reg.ServeHTTP(w, req)
	})
	r.srv = httptest.NewUnstartedServer(h)
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors are what some tests cause
	if useTLS {
		r.srv.StartTLS()
		r.pool = x509.NewCertPool()
		r.pool.AddCert(r.srv.Certificate())
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "https://"), "http://")
	return r
}

func TestPushIndexOverTLS(t *testing.T) {
	t.Parallel()
	idx := fakeIndex(t, "push")
	want, err := idx.Digest()
	require.NoError(t, err)
	ctx := context.Background()

	t.Run("a client trusting the registry's CA pushes, and reads back the same digest", func(t *testing.T) {
		t.Parallel()
		reg := newTestRegistry(t, true, "", "")
		c := &RegistryClient{RootCAs: reg.pool}
		ref := reg.host + "/connected-registry/connected-registry:0.1.0"
		got, err := c.PushIndex(ctx, idx, ref)
		require.NoError(t, err)
		require.Equal(t, want, got)

		r, err := c.Reference(ref)
		require.NoError(t, err)
		back, err := remote.Index(r, c.Options(ctx)...)
		require.NoError(t, err)
		d, err := back.Digest()
		require.NoError(t, err)
		require.Equal(t, want, d)
		im, err := back.IndexManifest()
		require.NoError(t, err)
		require.Len(t, im.Manifests, 2)
		for _, m := range im.Manifests {
			img, err := back.Image(m.Digest)
			require.NoError(t, err)
			require.NotEmpty(t, layerEntries(t, img), "layer readable from the registry")
		}
	})

	t.Run("a plain-HTTP client cannot push to a TLS registry", func(t *testing.T) {
		t.Parallel()
		reg := newTestRegistry(t, true, "", "")
		c := &RegistryClient{InsecureHTTP: true}
		_, err := c.PushIndex(ctx, idx, reg.host+"/x/y:1")
		require.ErrorContains(t, err, ErrHTTPS.Error(), "the client tried HTTPS")
		require.ErrorContains(t, err, "Client sent an HTTP request to an HTTPS server")
	})

	t.Run("a plain-HTTP client pushes to a plain-HTTP registry", func(t *testing.T) {
		t.Parallel()
		reg := newTestRegistry(t, false, "", "")
		c := &RegistryClient{InsecureHTTP: true}
		got, err := c.PushIndex(ctx, idx, reg.host+"/x/y:1")
		require.NoError(t, err)
		require.Equal(t, want, got)
	})

	t.Run("an HTTPS client never falls back to a plain-HTTP registry on 127.0.0.1", func(t *testing.T) {
		t.Parallel()
		reg := newTestRegistry(t, false, "", "")
		c := &RegistryClient{}
		_, err := c.PushIndex(ctx, idx, reg.host+"/x/y:1")
		require.ErrorContains(t, err, ErrPlainHTTP.Error())
		require.Zero(t, reg.requests.Load(), "the plain-HTTP registry was reached")
	})

	t.Run("a client that does not trust the registry's CA fails", func(t *testing.T) {
		t.Parallel()
		reg := newTestRegistry(t, true, "", "")
		c := &RegistryClient{RootCAs: x509.NewCertPool()}
		_, err := c.PushIndex(ctx, idx, reg.host+"/x/y:1")
		require.ErrorContains(t, err, "certificate signed by unknown authority")
	})

	t.Run("credentials are required by an authenticating registry, and accepted", func(t *testing.T) {
		t.Parallel()
		reg := newTestRegistry(t, true, "seed", "s3cret")
		anon := &RegistryClient{RootCAs: reg.pool}
		_, err := anon.PushIndex(ctx, idx, reg.host+"/x/y:1")
		require.ErrorContains(t, err, "401")
		c := &RegistryClient{RootCAs: reg.pool, Auth: &authn.Basic{Username: "seed", Password: "s3cret"}}
		got, err := c.PushIndex(ctx, idx, reg.host+"/x/y:1")
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}

func TestPushArchiveRenames(t *testing.T) {
	t.Parallel()
	reg := newTestRegistry(t, true, "", "")
	idx := fakeIndex(t, "archive")
	path := filepath.Join(t.TempDir(), "registry.tar")
	require.NoError(t, WriteArchiveFile(path, NamedIndex{
		Refs:  []string{"docker.io/library/registry:3", "ghcr.io/connected-registry/distribution:v3.1.2"},
		Index: idx,
	}))
	c := &RegistryClient{RootCAs: reg.pool}
	var pushed []string
	err := c.PushArchive(context.Background(), path, reg.host, []Rename{{From: "library", To: "mirror/library"}},
		func(p Pushed) { pushed = append(pushed, p.Destination) })
	require.NoError(t, err)
	require.Equal(t, []string{
		reg.host + "/mirror/library/registry:3",
		reg.host + "/connected-registry/distribution:v3.1.2",
	}, pushed)
	want, _ := idx.Digest()
	for _, ref := range pushed {
		r, err := c.Reference(ref)
		require.NoError(t, err)
		desc, err := remote.Head(r, c.Options(context.Background())...)
		require.NoError(t, err)
		require.Equal(t, want, desc.Digest, ref)
	}
}

func TestDestinationRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		src     string
		renames []Rename
		want    string
	}{
		{"the repository path and tag are kept under the registry", "ghcr.io/connected-registry/connected-registry:0.1.0", nil,
			"10.0.0.1:5443/connected-registry/connected-registry:0.1.0"},
		{"a Docker Hub official image keeps library/", "docker.io/library/registry:3", nil,
			"10.0.0.1:5443/library/registry:3"},
		{"a rename matching the whole path replaces it", "ghcr.io/connected-registry/testdata/hello:v1",
			[]Rename{{"connected-registry/testdata/hello", "samples/hello"}}, "10.0.0.1:5443/samples/hello:v1"},
		{"a rename matching a leading path replaces it", "ghcr.io/connected-registry/testdata/hello:v1",
			[]Rename{{"connected-registry", "cr"}}, "10.0.0.1:5443/cr/testdata/hello:v1"},
		{"a rename matching inside a path component does nothing", "ghcr.io/connected-registry/connected-registry:0.1.0",
			[]Rename{{"connected", "x"}}, "10.0.0.1:5443/connected-registry/connected-registry:0.1.0"},
		{"the first matching rename wins", "ghcr.io/a/b:1",
			[]Rename{{"a/b", "first"}, {"a", "second"}}, "10.0.0.1:5443/first:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DestinationRef(tc.src, "10.0.0.1:5443", tc.renames)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseRename(t *testing.T) {
	t.Parallel()
	r, err := ParseRename("/connected-registry/testdata/=samples")
	require.NoError(t, err)
	require.Equal(t, Rename{From: "connected-registry/testdata", To: "samples"}, r)
	for _, bad := range []string{"", "a", "a=", "=b"} {
		_, err := ParseRename(bad)
		require.ErrorContains(t, err, "is not FROM=TO", bad)
	}
}
