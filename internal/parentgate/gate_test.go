package parentgate

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const timeout = 300 * time.Millisecond

// startGate serves a gate on 127.0.0.1 and returns its URL.
func startGate(t *testing.T, g *Gate) *url.URL {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return u
}

func newGate() *Gate {
	return &Gate{ResponseTimeout: timeout, DialTimeout: timeout, Cooldown: time.Minute, ShareFetches: true}
}

// gateFor is a gate in front of parent, trusting its certificate.
func gateFor(t *testing.T, parent *httptest.Server) (*Gate, *url.URL) {
	t.Helper()
	u, err := url.Parse(parent.URL)
	require.NoError(t, err)
	g := newGate()
	// Long enough for a TLS handshake on a loaded machine: tests about silence set their own.
	g.ResponseTimeout = 5 * time.Second
	g.Parent = u
	g.TLSConfig = parent.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	g.SpoolDir = t.TempDir()
	return g, startGate(t, g)
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestGate(t *testing.T) {
	t.Parallel()

	t.Run("a parent that hangs on a kept-alive connection should be cut, and the next request refused at once", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/hang" {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			io.WriteString(w, "ok")
		}))
		defer parent.Close()
		defer close(release)
		g, gate := gateFor(t, parent)
		g.ResponseTimeout = time.Second // a TLS handshake under the race detector takes a while

		body, err := get(http.DefaultClient, gate.String()+"/v2/ok")
		require.NoError(t, err)
		require.Equal(t, "ok", body)
		start := time.Now()
		resp, err := http.Get(gate.String() + "/v2/hang")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("hang: %s after %s: %q", resp.Status, time.Since(start), b)
		// 502 when the cut ended the request, 503 when the client's transport retried it on a new connection.
		require.Contains(t, []int{http.StatusBadGateway, http.StatusServiceUnavailable}, resp.StatusCode)
		require.Less(t, time.Since(start), 10*time.Second)
		resp, err = http.Get(gate.String() + "/v2/ok")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "within the cooldown the gate must refuse at once")
	})

	t.Run("a response that streams for longer than the timeout should pass, and so should a slowish answer", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/slowish" {
				time.Sleep(timeout / 3)
				io.WriteString(w, "late but fine")
				return
			}
			for i := 0; i < 8; i++ {
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
				time.Sleep(timeout / 3)
			}
		}))
		defer parent.Close()
		g, gate := gateFor(t, parent)
		g.ResponseTimeout = time.Second

		body, err := get(http.DefaultClient, gate.String()+"/v2/stream")
		require.NoError(t, err)
		require.Len(t, body, 8000)
		body, err = get(http.DefaultClient, gate.String()+"/v2/slowish")
		require.NoError(t, err)
		require.Equal(t, "late but fine", body)
	})

	t.Run("a busy parent, streaming one response while slow to start another, should keep both connections", func(t *testing.T) {
		t.Parallel()
		slowDone := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/slow" {
				time.Sleep(3 * time.Second)
				io.WriteString(w, "slow but alive")
				return
			}
			// Busy until the slow answer is in, however long the slow request's TLS handshake takes.
			for i := 0; i < 400; i++ {
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
				select {
				case <-slowDone:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}))
		defer parent.Close()
		g, gate := gateFor(t, parent)
		g.ResponseTimeout = time.Second
		streamed := make(chan error, 1)
		go func() {
			_, err := get(http.DefaultClient, gate.String()+"/v2/stream")
			streamed <- err
		}()
		time.Sleep(500 * time.Millisecond)
		body, err := get(http.DefaultClient, gate.String()+"/v2/slow")
		close(slowDone)
		require.NoError(t, err)
		require.Equal(t, "slow but alive", body)
		require.NoError(t, <-streamed)
	})

	t.Run("the cooldown should end and a parent that is back should be reached again", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		defer parent.Close()
		now := time.Now()
		var offset atomic.Int64
		g, gate := gateFor(t, parent)
		g.now = func() time.Time { return now.Add(time.Duration(offset.Load())) }

		g.markDown(parent.Listener.Addr().String(), "test")
		resp, err := http.Get(gate.String() + "/v2/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		offset.Store(int64(2 * time.Minute))
		body, err := get(http.DefaultClient, gate.String()+"/v2/")
		require.NoError(t, err)
		require.Equal(t, "ok", body)
	})

	t.Run("an outbound proxy should carry the connections to the parent when one is configured", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "via proxy") }))
		defer parent.Close()
		proxy, connects := connectProxy(t)
		g, gate := gateFor(t, parent)
		g.Upstream = func(string) (*url.URL, error) { return proxy, nil }

		body, err := get(http.DefaultClient, gate.String()+"/v2/")
		require.NoError(t, err)
		require.Equal(t, "via proxy", body)
		require.Equal(t, []string{parent.Listener.Addr().String()}, connects())
	})

	t.Run("CONNECT should be refused: the gate reaches only the parent's hosts, for the registry API", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.NotFoundHandler())
		defer parent.Close()
		_, gate := gateFor(t, parent)
		other := silentListener(t)
		c, err := net.Dial("tcp", gate.Host)
		require.NoError(t, err)
		defer c.Close()
		_, err = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", other, other)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	})

	t.Run("a listen address off the loopback should be refused", func(t *testing.T) {
		t.Parallel()
		for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
			_, err := Listen(addr, 0)
			require.ErrorIs(t, err, ErrNotLoopback, addr)
		}
		l, err := Listen("127.0.0.1:0", 1)
		require.NoError(t, err)
		l.Close()
	})
}

// connectProxy is an outbound HTTP proxy that tunnels CONNECT requests and records their targets.
func connectProxy(t *testing.T) (*url.URL, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var targets []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		targets = append(targets, r.Host)
		mu.Unlock()
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		client, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(up, client); up.Close() }()
		io.Copy(client, up)
		client.Close()
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return u, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), targets...)
	}
}
