// Package parentgate is an HTTP CONNECT proxy that the registry reaches its parent through, so that a parent
// which stops answering costs the registry a bounded, short wait.
//
// Distribution's pull-through proxy asks the parent for every tag it serves and falls back to its cache only
// when that request fails. It uses Go's default HTTP transport, whose timeouts are fixed in code: a parent that
// accepts connections and never answers holds every tag pull for the 10 s TLS handshake timeout, and a parent
// that hangs while the registry holds a keep-alive connection to it holds them until the client gives up.
// Nothing in Distribution's configuration changes that. The gate sits in the registry's pod as its HTTPS_PROXY
// and watches each tunnel: when the registry has sent bytes the parent has not answered within ResponseTimeout,
// and the parent has sent nothing on any tunnel for as long, it cuts the tunnel, and for Cooldown refuses new
// tunnels to that parent at once, so the registry serves its cache without waiting. A parent that is busy,
// streaming other responses while this one is slow to start, is not silent and keeps its tunnels. TLS stays end
// to end: the gate never sees the content.
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

// Gate is the CONNECT proxy. Its zero value is not usable; fill the durations.
type Gate struct {
	// ResponseTimeout is how long bytes from the registry may stay unanswered by the parent, from the TLS
	// handshake to every request on a kept-alive connection. A response that has begun may take as long as it
	// takes: only silence after the registry spoke counts.
	ResponseTimeout time.Duration
	// DialTimeout bounds connecting to the parent (or to the outbound proxy).
	DialTimeout time.Duration
	// Cooldown is how long the gate refuses new tunnels to a parent it found silent or unreachable, before it
	// lets one try again.
	Cooldown time.Duration
	// Upstream returns the outbound proxy for a target host:port, nil to dial it directly (as
	// http.ProxyFromEnvironment does for the registry without the gate).
	Upstream func(target string) (*url.URL, error)
	// Log receives one line per tunnel that was cut or refused.
	Log *slog.Logger

	mu   sync.Mutex
	down map[string]time.Time     // target → refused until
	seen map[string]*atomic.Int64 // target → unix nanos of the last bytes the parent sent on any tunnel
	now  func() time.Time
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

// ServeHTTP tunnels CONNECT requests and refuses everything else.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "the parent gate only tunnels CONNECT requests", http.StatusMethodNotAllowed)
		return
	}
	target := r.Host
	if _, _, err := net.SplitHostPort(target); err != nil {
		http.Error(w, fmt.Sprintf("CONNECT target %q is not host:port", target), http.StatusBadRequest)
		return
	}
	if until, ok := g.isDown(target); ok {
		http.Error(w, fmt.Sprintf("parent %s did not answer; the gate refuses tunnels to it until %s", target, until.Format(time.RFC3339)), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.DialTimeout)
	up, err := g.dial(ctx, target)
	cancel()
	if err != nil {
		g.markDown(target, "connecting failed: "+err.Error())
		http.Error(w, fmt.Sprintf("connecting to parent %s: %v", target, err), http.StatusBadGateway)
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
	g.tunnel(target, client, up, pending)
}

// tunnel copies both ways until either side ends or the parent is silent: the registry's bytes on this tunnel
// unanswered for ResponseTimeout, and nothing from the parent on any tunnel for as long.
func (g *Gate) tunnel(target string, client, up net.Conn, pending []byte) {
	var unanswered atomic.Int64 // unix nanos of the oldest registry bytes the parent has not answered; 0: none
	seen := g.lastSeen(target)
	now := g.clock()
	done := make(chan struct{})
	var once sync.Once
	closeBoth := func() { once.Do(func() { close(done); client.Close(); up.Close() }) }

	if len(pending) > 0 {
		unanswered.Store(now().UnixNano())
		if _, err := up.Write(pending); err != nil {
			closeBoth()
			return
		}
	}
	go func() { // registry → parent
		defer closeBoth()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				unanswered.CompareAndSwap(0, now().UnixNano())
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // parent → registry
		defer closeBoth()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 {
				unanswered.Store(0)
				seen.Store(now().UnixNano())
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(max(g.ResponseTimeout/8, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			t := now()
			since := unanswered.Load()
			if since != 0 && t.Sub(time.Unix(0, since)) > g.ResponseTimeout && t.Sub(time.Unix(0, seen.Load())) > g.ResponseTimeout {
				g.markDown(target, fmt.Sprintf("no answer within %s", g.ResponseTimeout))
				closeBoth()
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
