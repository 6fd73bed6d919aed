package parentgate

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawGet sends path as it is, byte for byte, so no client cleans it first.
func rawGet(t *testing.T, gateHost, path string) int {
	t.Helper()
	c, err := net.Dial("tcp", gateHost)
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, gateHost)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestBounds(t *testing.T) {
	t.Parallel()

	t.Run("paths with dot segments or encoded dots and slashes should be refused before the parent sees them", func(t *testing.T) {
		t.Parallel()
		var seen atomic.Int32
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1) }))
		defer parent.Close()
		_, gate := gateFor(t, parent)
		for _, p := range []string{"/v2/../admin/secret", "/v2/%2e%2e/admin/secret", "/v2/%2E%2E/x", "/v2/a%2Fb/manifests/latest",
			"/v2/./x/manifests/v1", "/v2/x/../../etc", "/v2//x/manifests/v1", "/v2/x%5cy/manifests/v1"} {
			require.Equal(t, http.StatusBadRequest, rawGet(t, gate.Host, p), p)
		}
		require.Zero(t, seen.Load(), "the parent saw a refused path")
		require.Equal(t, http.StatusOK, rawGet(t, gate.Host, "/v2/a/b/manifests/latest"))
	})

	t.Run("a redirect to another port of the same host should not carry the registry's credentials, nor one to plain http go anywhere", func(t *testing.T) {
		t.Parallel()
		var auth sync.Map
		storage := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth.Store(r.URL.Path, r.Header.Get("Authorization"))
			io.WriteString(w, "from storage")
		}))
		defer storage.Close()
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("the gate followed a redirect to plain http") }))
		defer plain.Close()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/a/b/manifests/plain" {
				http.Redirect(w, r, plain.URL+"/x", http.StatusTemporaryRedirect)
				return
			}
			http.Redirect(w, r, storage.URL+"/same-host-other-port", http.StatusTemporaryRedirect)
		}))
		defer parent.Close()
		_, gate := gateFor(t, parent)

		resp, body, err := getWith(t, gate.String()+"/v2/a/b/manifests/v1", http.Header{"Authorization": {"Bearer PARENT-TOKEN"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		v, ok := auth.Load("/same-host-other-port")
		require.True(t, ok)
		require.Empty(t, v, "127.0.0.1 on another port is another origin")

		resp, _, err = getWith(t, gate.String()+"/v2/a/b/manifests/plain", http.Header{"Authorization": {"Bearer PARENT-TOKEN"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	})

	t.Run("a parent that stalls mid-body should end the shared fetch with an error, and a retry start a fetch of its own", func(t *testing.T) {
		t.Parallel()
		content, path := blob(1 << 20)
		var gets atomic.Int32
		release := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			if gets.Add(1) == 1 {
				w.Write(content[:len(content)/2])
				w.(http.Flusher).Flush()
				select { // stalls, the connection open
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			w.Write(content)
		}))
		defer parent.Close()
		defer close(release)
		g, gate := gateFor(t, parent)
		g.ResponseTimeout = 300 * time.Millisecond
		g.BodyTimeout = 2 * time.Second

		first := make(chan error, 1)
		go func() {
			_, body, err := getWith(t, gate.String()+path, nil)
			if err == nil {
				err = fmt.Errorf("a complete answer of %d bytes", len(body))
			}
			first <- err
		}()
		require.Eventually(t, func() bool { return gets.Load() == 1 && g.readersOf(path) == 1 }, 10*time.Second, 5*time.Millisecond)
		time.Sleep(2 * g.ResponseTimeout) // the fetch sends nothing more

		start := time.Now()
		resp, body, err := getWith(t, gate.String()+path, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, content, body)
		require.Less(t, time.Since(start), g.BodyTimeout, "the retry waited on the stalled fetch")
		require.EqualValues(t, 2, gets.Load())

		select {
		case err := <-first:
			require.Error(t, err)
			require.NotContains(t, err.Error(), "a complete answer")
		case <-time.After(10 * time.Second):
			t.Fatal("the stalled fetch never ended")
		}
		require.Eventually(t, func() bool { return len(spoolFiles(t, g.SpoolDir)) == 0 && g.spooled.Load() == 0 }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("bytes that do not hash to the blob's digest should break off every sharer and never be offered again", func(t *testing.T) {
		t.Parallel()
		content, path := blob(512 << 10)
		poisoned := bytes.Clone(content)
		poisoned[len(poisoned)-1] ^= 0xff
		var gets atomic.Int32
		release := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gets.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(len(poisoned)))
			w.Write(poisoned[:1000])
			w.(http.Flusher).Flush()
			<-release
			w.Write(poisoned[1000:])
		}))
		defer parent.Close()
		g, gate := gateFor(t, parent)
		g.Linger = time.Hour

		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, body, err := getWith(t, gate.String()+path, nil)
				if err == nil {
					err = fmt.Errorf("a complete answer of %d bytes", len(body))
				}
				errs <- err
			}()
		}
		require.Eventually(t, func() bool { return g.readersOf(path) == 3 }, 10*time.Second, 5*time.Millisecond)
		close(release)
		for range 3 {
			err := <-errs
			require.Error(t, err)
			require.NotContains(t, err.Error(), "a complete answer")
		}
		_, _, err := getWith(t, gate.String()+path, nil)
		require.Error(t, err)
		require.EqualValues(t, 2, gets.Load(), "poisoned bytes must not linger for later requests")
	})

	t.Run("a fetch beyond the spool budget should stream unshared, and leave nothing spooled", func(t *testing.T) {
		t.Parallel()
		content, path := blob(256 << 10)
		var gets atomic.Int32
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gets.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.Write(content)
		}))
		defer parent.Close()
		g, gate := gateFor(t, parent)
		g.SpoolBudget = 64 << 10

		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				_, body, err := getWith(t, gate.String()+path, nil)
				require.NoError(t, err)
				require.Equal(t, content, body)
			})
		}
		wg.Wait()
		require.EqualValues(t, 3, gets.Load())
		require.Empty(t, spoolFiles(t, g.SpoolDir))
		require.Zero(t, g.spooled.Load())
	})

	t.Run("a reader that stops should not pin a spooled blob past the write timeout", func(t *testing.T) {
		t.Parallel()
		content, path := blob(48 << 20)
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.Write(content)
		}))
		defer parent.Close()
		g, gate := gateFor(t, parent)
		g.WriteTimeout = 500 * time.Millisecond

		c, err := net.Dial("tcp", gate.Host)
		require.NoError(t, err)
		defer c.Close()
		_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, gate.Host)
		require.NoError(t, err)
		_, err = io.ReadFull(c, make([]byte, 64))
		require.NoError(t, err)
		// The client reads no more, and keeps its connection open.
		require.Eventually(t, func() bool {
			return len(spoolFiles(t, g.SpoolDir)) == 0 && g.spooled.Load() == 0 && g.readersOf(path) == 0
		}, 20*time.Second, 50*time.Millisecond, "the stalled reader still pins the spool")
	})

	t.Run("connections beyond the cap should wait for one to close", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		defer parent.Close()
		g, _ := gateFor(t, parent)
		l, err := Listen("127.0.0.1:0", 1)
		require.NoError(t, err)
		srv := g.Server()
		go srv.Serve(l)
		defer srv.Close()

		held, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond) // accepted
		waiting := &http.Transport{}
		_, err = (&http.Client{Transport: waiting, Timeout: 500 * time.Millisecond}).Get("http://" + l.Addr().String() + "/v2/")
		require.Error(t, err, "a second connection was served while the cap was reached")
		waiting.CloseIdleConnections()
		held.Close()
		body, err := get(&http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}, "http://"+l.Addr().String()+"/v2/")
		require.NoError(t, err)
		require.Equal(t, "ok", body)
	})
}
