package parentgate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// forwardingGate is a gate in front of parent, trusting its certificate, as the chart runs it for the
// registry's remoteurl.
func forwardingGate(t *testing.T, parent *httptest.Server) (*Gate, string) {
	t.Helper()
	u, err := url.Parse(parent.URL)
	require.NoError(t, err)
	g := newGate()
	// Long enough for a TLS handshake under the race detector: these tests are not about silence.
	g.ResponseTimeout = 5 * time.Second
	g.Parent = u
	g.TLSConfig = parent.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	g.SpoolDir = t.TempDir()
	return g, startGate(t, g).String()
}

// blob is content and its path in repository test/app.
func blob(size int) ([]byte, string) {
	b := bytes.Repeat([]byte("connected-registry "), size/19+1)[:size]
	return b, fmt.Sprintf("/v2/test/app/blobs/sha256:%x", sha256.Sum256(b))
}

// readers is how many requests stream from the flight of path (any credentials).
func (g *Gate) readersOf(path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for k, f := range g.flights {
		if len(k) > len(path) && k[:len(path)] == path && k[len(path)] == 0 {
			n += f.readers
		}
	}
	return n
}

func getWith(t *testing.T, u string, header http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestForward(t *testing.T) {
	t.Parallel()

	t.Run("concurrent GETs of one blob should make one fetch from the parent, and every request get every byte", func(t *testing.T) {
		t.Parallel()
		content, path := blob(4 << 20)
		release := make(chan struct{})
		var gets atomic.Int32
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gets.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.Header().Set("Docker-Content-Digest", path[len("/v2/test/app/blobs/"):])
			w.Write(content[:len(content)/2])
			w.(http.Flusher).Flush()
			<-release // the other requests join while half of the blob is spooled
			w.Write(content[len(content)/2:])
		}))
		defer parent.Close()
		g, gate := forwardingGate(t, parent)

		const clients = 12
		type result struct {
			resp *http.Response
			body []byte
			err  error
		}
		results := make(chan result, clients)
		for range clients {
			go func() {
				resp, body, err := getWith(t, gate+path, http.Header{"Authorization": {"Basic c3luYzp0b2tlbg=="}})
				results <- result{resp, body, err}
			}()
		}
		require.Eventually(t, func() bool { return g.readersOf(path) == clients }, 10*time.Second, 5*time.Millisecond,
			"all requests should join the one fetch")
		close(release)
		for range clients {
			r := <-results
			require.NoError(t, r.err)
			require.Equal(t, http.StatusOK, r.resp.StatusCode)
			require.Equal(t, path[len("/v2/test/app/blobs/"):], r.resp.Header.Get("Docker-Content-Digest"))
			require.Equal(t, int64(len(content)), r.resp.ContentLength)
			require.True(t, bytes.Equal(content, r.body), "a request got other bytes than the parent sent")
		}
		require.EqualValues(t, 1, gets.Load(), "the parent should be asked once")
		require.Zero(t, g.readersOf(path))

		// Once the fetch is over, a new request asks the parent again (the registry has stored the blob by then).
		_, body, err := getWith(t, gate+path, nil)
		require.NoError(t, err)
		require.Equal(t, content, body)
		require.EqualValues(t, 2, gets.Load())
	})

	t.Run("a request that comes while a fetched blob lingers should get the spooled copy; after that, the parent's", func(t *testing.T) {
		t.Parallel()
		content, path := blob(1 << 20)
		var gets atomic.Int32
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gets.Add(1)
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			w.Write(content)
		}))
		defer parent.Close()
		g, gate := forwardingGate(t, parent)
		g.Linger = time.Hour

		for range 3 {
			_, body, err := getWith(t, gate+path, nil)
			require.NoError(t, err)
			require.Equal(t, content, body)
		}
		require.EqualValues(t, 1, gets.Load(), "requests after the fetch, while it lingers, should not ask the parent")

		// An answer other than the blob does not linger.
		_, missing := blob(1000)
		for range 2 {
			resp, _, err := getWith(t, gate+missing, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusNotFound, resp.StatusCode)
		}
		require.EqualValues(t, 3, gets.Load(), "a 404 should not be kept for later requests")
	})

	t.Run("requests with other credentials, a range or a query should each ask the parent", func(t *testing.T) {
		t.Parallel()
		content, path := blob(1 << 20)
		release := make(chan struct{})
		var gets atomic.Int32
		var ranges sync.Map
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gets.Add(1)
			if rg := r.Header.Get("Range"); rg != "" {
				ranges.Store(rg, true)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 10-19/%d", len(content)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content[10:20])
				return
			}
			w.Write(content[:1000])
			w.(http.Flusher).Flush()
			<-release
			w.Write(content[1000:])
		}))
		defer parent.Close()
		_, gate := forwardingGate(t, parent)

		var wg sync.WaitGroup
		for _, h := range []http.Header{{"Authorization": {"Basic YTpi"}}, {"Authorization": {"Basic Yzpk"}}, {}} {
			wg.Go(func() {
				_, body, err := getWith(t, gate+path, h)
				require.NoError(t, err)
				require.Equal(t, content, body)
			})
		}
		wg.Go(func() {
			_, body, err := getWith(t, gate+path+"?ns=example", nil)
			require.NoError(t, err)
			require.Equal(t, content, body)
		})
		require.Eventually(t, func() bool { return gets.Load() == 4 }, 10*time.Second, 5*time.Millisecond)
		resp, body, err := getWith(t, gate+path, http.Header{"Range": {"bytes=10-19"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusPartialContent, resp.StatusCode)
		require.Equal(t, content[10:20], body)
		_, ok := ranges.Load("bytes=10-19")
		require.True(t, ok, "the range should reach the parent")
		close(release)
		wg.Wait()
		require.EqualValues(t, 5, gets.Load())
	})

	for _, length := range []bool{true, false} {
		t.Run(fmt.Sprintf("a parent that breaks off a blob should break off every request that shares it (content length %t)", length), func(t *testing.T) {
			t.Parallel()
			content, path := blob(64 << 10)
			release := make(chan struct{})
			parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if length {
					w.Header().Set("Content-Length", strconv.Itoa(len(content)))
				}
				w.Write(content[:1000])
				w.(http.Flusher).Flush()
				<-release
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			}))
			defer parent.Close()
			g, gate := forwardingGate(t, parent)

			errs := make(chan error, 3)
			for range 3 {
				go func() {
					_, body, err := getWith(t, gate+path, nil)
					if err == nil {
						err = fmt.Errorf("a complete answer of %d bytes", len(body))
					}
					errs <- err
				}()
			}
			require.Eventually(t, func() bool { return g.readersOf(path) == 3 }, 10*time.Second, 5*time.Millisecond)
			close(release)
			for range 3 {
				// Cut before or after its header went out: either way no request ends as if the blob were whole.
				err := <-errs
				require.Error(t, err)
				require.NotContains(t, err.Error(), "a complete answer")
			}
		})
	}

	t.Run("when every request has left, the fetch should stop", func(t *testing.T) {
		t.Parallel()
		_, path := blob(10)
		stopped := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(stopped)
			for {
				if _, err := w.Write(make([]byte, 1024)); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}))
		defer parent.Close()
		g, gate := forwardingGate(t, parent)

		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, gate+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, err = io.ReadFull(resp.Body, make([]byte, 4096))
		require.NoError(t, err)
		cancel()
		resp.Body.Close()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("the parent is still sending a blob nobody wants")
		}
		require.Eventually(t, func() bool { return g.readersOf(path) == 0 }, 5*time.Second, 5*time.Millisecond)
	})

	t.Run("other requests should pass with their headers; writes and other paths should be refused", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Docker-Content-Digest", "sha256:abc")
			w.Header().Set("X-Seen-Accept", r.Header.Get("Accept"))
			w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
			w.Header().Set("X-Seen-Host", r.Host)
			w.Header().Set("X-Seen-Proxy-Authorization", r.Header.Get("Proxy-Authorization"))
			w.Header().Set("X-Seen-Query", r.URL.RawQuery)
			if r.URL.Path == "/v2/" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="https://parent.example/oauth2/token",service="parent.example"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			io.WriteString(w, `{"schemaVersion":2}`)
		}))
		defer parent.Close()
		_, gate := forwardingGate(t, parent)
		parentHost := parent.Listener.Addr().String()

		resp, _, err := getWith(t, gate+"/v2/", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		gateHost := strings.TrimPrefix(gate, "http://")
		require.Equal(t, `Bearer realm="http://`+gateHost+`/_gate/token?realm=https%3A%2F%2Fparent.example%2Foauth2%2Ftoken",service="parent.example"`,
			resp.Header.Get("WWW-Authenticate"), "the realm points at the gate, which alone the registry keeps")

		resp, body, err := getWith(t, gate+"/v2/test/app/manifests/v1?x=1", http.Header{
			"Accept": {"application/vnd.oci.image.index.v1+json"}, "Authorization": {"Bearer t"}, "Proxy-Authorization": {"Basic cHJveHk="},
		})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, `{"schemaVersion":2}`, string(body))
		require.Equal(t, "application/vnd.oci.image.index.v1+json", resp.Header.Get("X-Seen-Accept"))
		require.Equal(t, "Bearer t", resp.Header.Get("X-Seen-Authorization"))
		require.Equal(t, parentHost, resp.Header.Get("X-Seen-Host"))
		require.Empty(t, resp.Header.Get("X-Seen-Proxy-Authorization"), "a header of the hop to the gate reached the parent")
		require.Equal(t, "x=1", resp.Header.Get("X-Seen-Query"))
		require.Equal(t, "sha256:abc", resp.Header.Get("Docker-Content-Digest"))

		req, _ := http.NewRequest(http.MethodHead, gate+"/v2/test/app/manifests/v1", nil)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "sha256:abc", resp.Header.Get("Docker-Content-Digest"))

		resp, err = http.Post(gate+"/v2/test/app/blobs/uploads/", "application/octet-stream", nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		require.Contains(t, string(b), "forwards only GET and HEAD to the parent, not POST")

		resp, _, err = getWith(t, gate+"/debug/vars", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})

	t.Run("a blob the parent sends from another host should be fetched there, once", func(t *testing.T) {
		t.Parallel()
		content, path := blob(256 << 10)
		var storageGets atomic.Int32
		storage := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			storageGets.Add(1)
			w.Write(content)
		}))
		defer storage.Close()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, storage.URL+"/container/blob?sig=x", http.StatusTemporaryRedirect)
		}))
		defer parent.Close()
		_, gate := forwardingGate(t, parent)

		resp, body, err := getWith(t, gate+path, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, content, body)
		require.EqualValues(t, 1, storageGets.Load())
	})

	t.Run("an idle connection should not make the parent look silent", func(t *testing.T) {
		t.Parallel()
		// HTTP/1.1 transports dial a connection for a request and, when another one frees first, keep the new one
		// idle: after the TLS handshake, its last bytes on the wire are the client's, and the parent rightly
		// says nothing.
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		defer parent.Close()
		g, gate := forwardingGate(t, parent)
		g.ResponseTimeout = time.Second
		tr := g.httpClient().Transport.(*http.Transport)
		idle, err := tr.DialTLSContext(context.Background(), "tcp", parent.Listener.Addr().String())
		require.NoError(t, err)
		defer idle.Close()
		time.Sleep(3 * g.ResponseTimeout)
		_, down := g.isDown(parent.Listener.Addr().String())
		require.False(t, down, "the gate took an idle connection for a silent parent")
		_, body, err := getWith(t, gate+"/v2/", nil)
		require.NoError(t, err)
		require.Equal(t, "ok", string(body))
	})

	t.Run("a parent that accepts and never finishes the TLS handshake should be cut after the response timeout", func(t *testing.T) {
		t.Parallel()
		silent := silentListener(t)
		g := newGate()
		g.Parent = &url.URL{Scheme: "https", Host: silent}
		startGate(t, g)
		_, err := g.httpClient().Transport.(*http.Transport).DialTLSContext(context.Background(), "tcp", silent)
		require.Error(t, err)
		_, down := g.isDown(silent)
		require.True(t, down, "the gate should refuse the silent parent for its cooldown")
	})

	t.Run("a silent parent should cost a forwarded request the response timeout, then nothing", func(t *testing.T) {
		t.Parallel()
		silent := silentListener(t)
		g := newGate()
		g.Parent = &url.URL{Scheme: "https", Host: silent}
		gate := startGate(t, g).String()

		start := time.Now()
		resp, body, err := getWith(t, gate+"/v2/test/app/manifests/v1", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadGateway, resp.StatusCode, string(body))
		require.Less(t, time.Since(start), 10*time.Second, "Go's TLS handshake timeout ended the request, not the gate")

		_, blobPath := blob(10)
		resp, body, err = getWith(t, gate+blobPath, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Contains(t, string(body), "refuses connections to it until", "within the cooldown the gate must refuse without connecting")
	})
}
