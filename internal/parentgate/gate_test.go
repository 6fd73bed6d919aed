package parentgate

import (
	"bufio"
	"crypto/tls"
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
	return &Gate{ResponseTimeout: timeout, DialTimeout: timeout, Cooldown: time.Minute}
}

// clientVia trusts parent's certificate and reaches everything through the gate, as the registry does with
// HTTPS_PROXY.
func clientVia(parent *httptest.Server, gate *url.URL) *http.Client {
	tr := parent.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(gate)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
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

	t.Run("a parent that accepts and never answers should be cut after the response timeout, then refused at once", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.NotFoundHandler()) // only for its client's trust settings
		defer parent.Close()
		gate := startGate(t, newGate())
		c := clientVia(parent, gate)
		silent := silentListener(t)

		start := time.Now()
		_, err := get(c, "https://"+silent+"/v2/")
		require.Error(t, err)
		require.NotContains(t, err.Error(), "Client.Timeout", "the client's own limit ended the request, not the gate")
		require.Less(t, time.Since(start), 10*time.Second, "Go's TLS handshake timeout ended the request, not the gate")

		_, err = get(c, "https://"+silent+"/v2/")
		require.ErrorContains(t, err, "Service Unavailable")
	})

	t.Run("a parent that hangs on a kept-alive connection should be cut, and the next tunnel refused", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hang" {
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
		gate := startGate(t, newGate())
		c := clientVia(parent, gate)

		body, err := get(c, parent.URL+"/ok")
		require.NoError(t, err)
		require.Equal(t, "ok", body)
		_, err = get(c, parent.URL+"/hang")
		require.Error(t, err)
		require.NotContains(t, err.Error(), "Client.Timeout")
		_, err = get(c, parent.URL+"/ok")
		require.ErrorContains(t, err, "Service Unavailable", "within the cooldown the gate must refuse at once")
	})

	t.Run("a response that streams for longer than the timeout should pass, and so should a slowish answer", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slowish" {
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
		gate := startGate(t, newGate())
		c := clientVia(parent, gate)

		body, err := get(c, parent.URL+"/stream")
		require.NoError(t, err)
		require.Len(t, body, 8000)
		body, err = get(c, parent.URL+"/slowish")
		require.NoError(t, err)
		require.Equal(t, "late but fine", body)
	})

	t.Run("a busy parent, streaming one response while slow to start another, should keep both tunnels", func(t *testing.T) {
		t.Parallel()
		slowDone := make(chan struct{})
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				time.Sleep(2 * timeout)
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
				case <-time.After(timeout / 4):
				}
			}
		}))
		defer parent.Close()
		gate := startGate(t, newGate())
		streamed := make(chan error, 1)
		go func() {
			_, err := get(clientVia(parent, gate), parent.URL+"/stream")
			streamed <- err
		}()
		time.Sleep(timeout / 2)
		body, err := get(clientVia(parent, gate), parent.URL+"/slow")
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
		g := newGate()
		g.now = func() time.Time { return now.Add(time.Duration(offset.Load())) }
		gate := startGate(t, g)
		c := clientVia(parent, gate)

		g.markDown(parent.Listener.Addr().String(), "test")
		_, err := get(c, parent.URL+"/")
		require.ErrorContains(t, err, "Service Unavailable")
		offset.Store(int64(2 * time.Minute))
		body, err := get(c, parent.URL+"/")
		require.NoError(t, err)
		require.Equal(t, "ok", body)
	})

	t.Run("an outbound proxy should carry the tunnel when one is configured", func(t *testing.T) {
		t.Parallel()
		parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "via proxy") }))
		defer parent.Close()
		var seen atomic.Int32
		outbound := &Gate{ResponseTimeout: time.Minute, DialTimeout: time.Second, Cooldown: time.Second}
		counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			outbound.ServeHTTP(w, r)
		}))
		defer counting.Close()
		g := newGate()
		up, _ := url.Parse(counting.URL)
		g.Upstream = func(string) (*url.URL, error) { return up, nil }
		c := clientVia(parent, startGate(t, g))

		body, err := get(c, parent.URL+"/")
		require.NoError(t, err)
		require.Equal(t, "via proxy", body)
		require.EqualValues(t, 1, seen.Load(), "the outbound proxy saw no CONNECT")
	})

	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(fmt.Sprintf("a tunnel left idle after its TLS handshake should not make the parent look silent (%s)", tls.VersionName(version)), func(t *testing.T) {
			t.Parallel()
			parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			defer parent.Close()
			g := newGate()
			g.ResponseTimeout = time.Second // a TLS handshake under the race detector takes a while
			gate := startGate(t, g)
			target := parent.Listener.Addr().String()

			c, err := net.Dial("tcp", gate.Host)
			require.NoError(t, err)
			defer c.Close()
			_, err = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
			require.NoError(t, err)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			cfg := parent.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			cfg.MaxVersion = version
			cfg.ServerName = "127.0.0.1"
			tc := tls.Client(c, cfg)
			require.NoError(t, tc.Handshake())
			require.Equal(t, version, tc.ConnectionState().Version)

			time.Sleep(3 * g.ResponseTimeout)
			_, down := g.isDown(target)
			require.False(t, down, "the gate took the idle tunnel for a silent parent")
			// And the tunnel still carries a request.
			_, err = io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
			require.NoError(t, err)
			resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, "ok", string(body))
		})
	}

	t.Run("a request that is not CONNECT should be refused", func(t *testing.T) {
		t.Parallel()
		gate := startGate(t, newGate())
		resp, err := http.Get(gate.String() + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	})
}
