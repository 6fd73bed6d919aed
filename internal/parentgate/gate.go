// Package parentgate is the registry's way to its parent: a reverse proxy for the parent's registry API that
// fetches each blob once however many requests want it at the same time, and an HTTP CONNECT proxy for
// everything else the registry reaches over TLS (the parent's token realm). Both bound what a silent parent
// costs.
//
// Distribution's pull-through proxy asks the parent for every tag it serves and falls back to its cache only
// when that request fails. It uses Go's default HTTP transport, whose timeouts are fixed in code: a parent that
// accepts connections and never answers holds every tag pull for the 10 s TLS handshake timeout, and a parent
// that hangs while the registry holds a keep-alive connection to it holds them until the client gives up.
// Nothing in Distribution's configuration changes that. The gate watches every connection it opens to the
// parent: when bytes it sent stay unanswered for ResponseTimeout, and the parent has sent nothing on any
// connection for as long, it cuts the connection, and for Cooldown refuses new connections to that parent at
// once, so the registry serves its cache without waiting. A parent that is busy, streaming other responses
// while this one is slow to start, is not silent and keeps its connections. Only bytes the parent answers
// count: the TLS handshake's first flight and the requests, not TLS's own messages that have no answer (the
// client's Finished of TLS 1.3, which is the last thing on the wire of a connection opened and left idle; the
// closing alert). The gate watches its own connections above TLS, and the registry's tunnels by their records.
//
// Distribution also fetches a blob from the parent once per concurrent request: only the first request stores
// it, every other one streams its own copy (proxyBlobStore.ServeBlob). Ten sites' nodes pulling one new image
// at once cost the uplink ten copies. With Parent set, the registry's remoteurl names the gate on the pod's
// loopback, in plain HTTP; the gate speaks TLS to the parent and lets concurrent GETs of one blob share one
// fetch, spooled to an unlinked file that every request streams from as the bytes arrive.
package parentgate

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Gate is the proxy. Its zero value is not usable; fill the durations.
type Gate struct {
	// Parent is the parent registry's URL (https://host[:port]). When set, requests other than CONNECT are
	// forwarded to it; when nil they are refused.
	Parent *url.URL
	// TLSConfig is used for connections to Parent; nil verifies it against the system roots (SSL_CERT_FILE).
	// The gate speaks HTTP/1.1 to Parent.
	TLSConfig *tls.Config
	// SpoolDir holds blobs fetched for concurrent requests, as unlinked files; empty is os.TempDir().
	SpoolDir string
	// Linger is how long a blob fetched whole stays in the spool for requests that come after the fetch ended,
	// while the registry is still storing it.
	Linger time.Duration

	// ResponseTimeout is how long bytes sent to the parent may stay unanswered, from the TLS handshake to every
	// request on a kept-alive connection. A response that has begun may take as long as it takes: only silence
	// after the gate spoke counts.
	ResponseTimeout time.Duration
	// DialTimeout bounds connecting to the parent (or to the outbound proxy).
	DialTimeout time.Duration
	// Cooldown is how long the gate refuses new connections to a parent it found silent or unreachable, before
	// it lets one try again.
	Cooldown time.Duration
	// Upstream returns the outbound proxy for a target host:port, nil to dial it directly (as
	// http.ProxyFromEnvironment does for the registry without the gate).
	Upstream func(target string) (*url.URL, error)
	// Log receives a line when a parent is found silent or unreachable, and one per blob fetch shared.
	Log *slog.Logger

	mu      sync.Mutex
	flights map[string]*flight       // blob requests in flight to Parent, by flightKey
	down    map[string]time.Time     // target → refused until
	seen    map[string]*atomic.Int64 // target → unix nanos of the last bytes the parent sent on any connection
	now     func() time.Time

	clientOnce sync.Once
	client     *http.Client
}

// lastSeen returns the clock of the last bytes target sent on any tunnel.
func (g *Gate) lastSeen(target string) *atomic.Int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = map[string]*atomic.Int64{}
	}
	c, ok := g.seen[target]
	if !ok {
		c = new(atomic.Int64)
		g.seen[target] = c
	}
	return c
}

// ServeHTTP tunnels CONNECT requests and, with Parent set, forwards the registry's other requests to the
// parent (see forward).
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		if g.Parent == nil {
			http.Error(w, "the parent gate only tunnels CONNECT requests", http.StatusMethodNotAllowed)
			return
		}
		g.forward(w, r)
		return
	}
	target := r.Host
	if _, _, err := net.SplitHostPort(target); err != nil {
		http.Error(w, fmt.Sprintf("CONNECT target %q is not host:port", target), http.StatusBadRequest)
		return
	}
	// The registry's TLS runs through the tunnel: only its records that the parent answers count.
	up, err := g.connect(r.Context(), target, (&tlsRecords{}).expectsAnswer)
	if err != nil {
		var down *downError
		if errors.As(err, &down) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "the connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	client, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	_ = client.SetDeadline(time.Time{})
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		up.Close()
		return
	}
	// Bytes the registry sent after the CONNECT request, already buffered.
	var pending []byte
	if n := rw.Reader.Buffered(); n > 0 {
		pending, _ = rw.Reader.Peek(n)
	}
	tunnel(client, up, pending)
}

// downError is the refusal of a parent the gate found silent or unreachable less than Cooldown ago.
type downError struct {
	target string
	until  time.Time
}

func (e *downError) Error() string {
	return fmt.Sprintf("parent %s did not answer; the gate refuses connections to it until %s", e.target, e.until.Format(time.RFC3339))
}

// connect opens a watched connection to target (host:port), or refuses at once while target is down. expects
// tells which written bytes the parent answers (watchedConn.expects); nil: all of them.
func (g *Gate) connect(ctx context.Context, target string, expects func([]byte) bool) (*watchedConn, error) {
	if until, ok := g.isDown(target); ok {
		return nil, &downError{target: target, until: until}
	}
	ctx, cancel := context.WithTimeout(ctx, g.DialTimeout)
	defer cancel()
	up, err := g.dial(ctx, target)
	if err != nil {
		g.markDown(target, "connecting failed: "+err.Error())
		return nil, fmt.Errorf("connecting to parent %s: %w", target, err)
	}
	return g.watch(target, up, expects), nil
}

// tunnel copies both ways until either side ends; up is watched, and cut when the parent is silent.
func tunnel(client, up net.Conn, pending []byte) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { client.Close(); up.Close() }) }
	defer closeBoth()
	if len(pending) > 0 {
		if _, err := up.Write(pending); err != nil {
			return
		}
	}
	go func() { // registry → parent
		defer closeBoth()
		_, _ = io.CopyBuffer(writerOnly{up}, readerOnly{client}, make([]byte, 32<<10))
	}()
	// parent → registry
	_, _ = io.CopyBuffer(writerOnly{client}, readerOnly{up}, make([]byte, 64<<10))
}

// readerOnly and writerOnly hide ReaderFrom and WriterTo, so copies go through the watched Read and Write.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// watchedConn is a connection to a parent that the gate cuts when the parent is silent: bytes written to it
// unanswered for ResponseTimeout, from the TLS handshake to every request on a kept-alive connection, while
// the parent sent nothing on any connection for as long. A response that has begun may take as long as it
// takes: only silence after the registry spoke counts.
type watchedConn struct {
	net.Conn
	g          *Gate
	target     string
	now        func() time.Time
	seen       *atomic.Int64 // unix nanos of the last bytes target sent on any connection
	unanswered atomic.Int64  // unix nanos of the oldest bytes written that target has not answered; 0: none
	closed     chan struct{}
	once       sync.Once
	// expects, when set, tells which written bytes the parent answers; nil: all of them.
	expects func(p []byte) bool
}

func (g *Gate) watch(target string, c net.Conn, expects func([]byte) bool) *watchedConn {
	w := &watchedConn{Conn: c, g: g, target: target, now: g.clock(), seen: g.lastSeen(target), closed: make(chan struct{}), expects: expects}
	go w.watch()
	return w
}

func (w *watchedConn) Write(p []byte) (int, error) {
	if len(p) > 0 && (w.expects == nil || w.expects(p)) {
		w.unanswered.CompareAndSwap(0, w.now().UnixNano())
	}
	return w.Conn.Write(p)
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		w.unanswered.Store(0)
		w.seen.Store(w.now().UnixNano())
	}
	return n, err
}

func (w *watchedConn) Close() error {
	w.disarm()
	return w.Conn.Close()
}

// disarm stops watching the connection, which stays open.
func (w *watchedConn) disarm() {
	w.once.Do(func() { close(w.closed) })
}

func (w *watchedConn) watch() {
	tick := time.NewTicker(max(w.g.ResponseTimeout/8, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-w.closed:
			return
		case <-tick.C:
			t := w.now()
			since := w.unanswered.Load()
			if since != 0 && t.Sub(time.Unix(0, since)) > w.g.ResponseTimeout && t.Sub(time.Unix(0, w.seen.Load())) > w.g.ResponseTimeout {
				w.g.markDown(w.target, fmt.Sprintf("no answer within %s", w.g.ResponseTimeout))
				w.Conn.Close()
				return
			}
		}
	}
}

func (g *Gate) clock() func() time.Time {
	if g.now != nil {
		return g.now
	}
	return time.Now
}

func (g *Gate) isDown(target string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.down[target]
	if !ok {
		return time.Time{}, false
	}
	if !g.clock()().Before(until) {
		// Let this one try: the parent may be back.
		delete(g.down, target)
		return time.Time{}, false
	}
	return until, true
}

func (g *Gate) markDown(target, why string) {
	until := g.clock()().Add(g.Cooldown)
	g.mu.Lock()
	if g.down == nil {
		g.down = map[string]time.Time{}
	}
	g.down[target] = until
	g.mu.Unlock()
	if g.Log != nil {
		g.Log.Warn("parent unavailable: the registry serves its cache", "parent", target, "reason", why, "refusing until", until.Format(time.RFC3339))
	}
}

// dial connects to target, through the outbound proxy Upstream names, if any.
func (g *Gate) dial(ctx context.Context, target string) (net.Conn, error) {
	var proxy *url.URL
	if g.Upstream != nil {
		var err error
		if proxy, err = g.Upstream(target); err != nil {
			return nil, err
		}
	}
	var d net.Dialer
	if proxy == nil {
		return d.DialContext(ctx, "tcp", target)
	}
	var conn net.Conn
	var err error
	switch proxy.Scheme {
	case "http":
		conn, err = d.DialContext(ctx, "tcp", hostPort(proxy, "80"))
	case "https":
		tlsDialer := &tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: proxy.Hostname(), MinVersion: tls.VersionTLS12}}
		conn, err = tlsDialer.DialContext(ctx, "tcp", hostPort(proxy, "443"))
	default:
		return nil, fmt.Errorf("outbound proxy %s: scheme %q is not http or https", proxy.Redacted(), proxy.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("outbound proxy %s: %w", proxy.Redacted(), err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("outbound proxy %s: %w", proxy.Redacted(), err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("outbound proxy %s: %w", proxy.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("outbound proxy %s answered CONNECT %s with %s", proxy.Redacted(), target, resp.Status)
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, errors.New("outbound proxy sent data before the tunnel was used")
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

func hostPort(u *url.URL, defaultPort string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), defaultPort)
}
