package parentgate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// blobPath matches a blob of the OCI distribution API: /v2/<name>/blobs/<algorithm>:<hex>.
var blobPath = regexp.MustCompile(`^/v2/(.+)/blobs/([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$`)

// hopByHop are the headers of one connection, not of the request (RFC 9110 section 7.6.1).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// Limits of the gate's client.
const (
	// maxRedirects bounds a redirect chain: a registry sends a blob from a storage host in one hop.
	maxRedirects = 3
	// idleConnTimeout closes connections to the parent left unused this long.
	idleConnTimeout = 90 * time.Second
	// maxIdleConnsPerHost keeps connections for concurrent blob fetches.
	maxIdleConnsPerHost = 32
	// tlsHandshakeLimit bounds a TLS handshake with a host that answers, but slowly, as Go's default transport
	// does; a silent one is cut after ResponseTimeout.
	tlsHandshakeLimit = 10 * time.Second
	// copyBuffer is the buffer of an unshared answer's copy.
	copyBuffer = 64 << 10
	// writeChunk is the most a shared answer writes under one write deadline.
	writeChunk = 4 << 20
)

// forward sends a request of the registry to the parent and its answer back. With ShareFetches, concurrent GETs
// of one blob share one fetch (see shared); everything else is forwarded as it comes.
func (g *Gate) forward(w http.ResponseWriter, r *http.Request) {
	key, blob := flightKey(r)
	if blob && g.Peers != nil {
		// One fetch across the replicas: the owner of the digest fetches it (see Peers). The replicas of a
		// release share the parent's credentials, so their requests share the fetch whatever token they carry.
		if g.toOwner(w, r, blobPath.FindStringSubmatch(r.URL.Path)[2]) {
			return
		}
		key = r.URL.Path + "\x00" + "replicas"
	}
	out := g.outgoing(r)
	if blob && g.ShareFetches {
		g.shared(w, r, key, out)
		return
	}
	if blob {
		g.Metrics.fetch(FetchStarted)
	}
	g.forwardAlone(w, r, out)
}

// outgoing is r, addressed to the parent, without the headers of the registry's connection to the gate.
func (g *Gate) outgoing(r *http.Request) *http.Request {
	u := *g.Parent
	u.Path = strings.TrimSuffix(g.Parent.Path, "/") + r.URL.Path
	u.RawPath = ""
	u.RawQuery = r.URL.RawQuery
	out, _ := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	copyHeader(out.Header, r.Header)
	return out
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append([]string(nil), vs...)
	}
	for _, h := range strings.Split(src.Get("Connection"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			dst.Del(h)
		}
	}
	for _, h := range hopByHop {
		dst.Del(h)
	}
}

// badGateway answers a request the parent could not be asked: 503 while the gate refuses the host, 502
// otherwise. Either way the registry serves its cache, if it has the content.
func (g *Gate) badGateway(w http.ResponseWriter, err error) {
	var down *downError
	if errors.As(err, &down) {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.Error(w, fmt.Sprintf("asking the parent: %v", err), http.StatusBadGateway)
}

// httpClient is the gate's client: every connection watched, HTTP/1.1, bodies as they are sent, redirects
// followed to the storage hosts the parent names, never with the registry's credentials.
func (g *Gate) httpClient() *http.Client {
	g.clientOnce.Do(func() {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				c, err := g.connect(ctx, addr)
				if err != nil {
					return nil, err
				}
				return c, nil
			},
			DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return g.connectTLS(ctx, addr)
			},
			DisableCompression:  true,
			MaxIdleConnsPerHost: maxIdleConnsPerHost,
			IdleConnTimeout:     idleConnTimeout,
		}
		g.client = &http.Client{Transport: tr, CheckRedirect: g.checkRedirect}
	})
	return g.client
}

// checkRedirect follows a redirect of the parent (a blob sent from a storage host) and lets the gate reach its
// host. The registry's credentials go to no other host or port than the first request's: the Authorization
// header is for the parent, and a storage host's URL carries its own signature.
func (g *Gate) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("the parent redirected more than %d times", maxRedirects)
	}
	if req.URL.Scheme != "https" && (req.URL.Scheme != "http" || g.Parent.Scheme != "http") {
		return fmt.Errorf("the parent redirected to %s://%s: the gate follows only https", req.URL.Scheme, req.URL.Host)
	}
	target := hostPort80443(req.URL)
	for _, v := range via {
		if !strings.EqualFold(hostPort80443(v.URL), target) || !strings.EqualFold(hostPort80443(via[0].URL), target) {
			req.Header.Del("Authorization")
			req.Header.Del("Cookie")
			break
		}
	}
	req.Header.Del("Referer")
	g.allow(target, roleStorage)
	return nil
}

// connectTLS opens a TLS connection to target (host:port) and watches what it carries: the handshake on the
// wire, then the requests and responses. The handshake's last message, the client's Finished, has no answer,
// nor do TLS's own later messages (a key update, the closing alert): watching the wire after the handshake
// would take an idle connection for a silent host.
func (g *Gate) connectTLS(ctx context.Context, target string) (net.Conn, error) {
	raw, err := g.connect(ctx, target)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(target)
	cfg := &tls.Config{}
	if g.TLSConfig != nil {
		cfg = g.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, tlsHandshakeLimit)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		r, _ := g.roleOf(target)
		return nil, fmt.Errorf("TLS handshake with %s %s: %w", r, target, err)
	}
	raw.disarm()
	return g.watch(target, tc, raw.Conn.Close), nil
}

// do sends out (a request to the parent) and returns the answer the registry gets: a Bearer challenge's realm
// rewritten to the gate's token path on gateHost, and, when the parent refuses a token the gate handed out, the
// answer to the request retried once with a fresh token.
func (g *Gate) do(out *http.Request, gateHost string) (*http.Response, error) {
	asked := g.clock()()
	resp, err := g.httpClient().Do(out)
	g.recordParent(asked, resp, err)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		if retried, ok := g.retryWithFreshToken(out); ok {
			resp.Body.Close()
			asked = g.clock()()
			resp, err = g.httpClient().Do(retried)
			g.recordParent(asked, resp, err)
			if err != nil {
				return nil, err
			}
		}
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		g.reportRefusal(out, resp, false, nil)
	}
	g.rewriteChallenges(resp, gateHost)
	return resp, nil
}

// recordParent records in the metrics whether the parent answered a request sent at asked: an answer below
// 500 or a redirect to a storage host, or, when the request failed, any bytes of the parent since (the failure
// was then a storage host's).
func (g *Gate) recordParent(asked time.Time, resp *http.Response, err error) {
	if g.Metrics == nil {
		return
	}
	switch {
	case err == nil && (resp.StatusCode < 500 || resp.Request == nil || !g.isParent(hostPort80443(resp.Request.URL))):
		g.Metrics.parentAnswered(g.clock()())
	case err == nil:
		g.Metrics.parentFailed()
	case g.lastSeen(hostPort80443(g.Parent)).Load() < asked.UnixNano():
		g.Metrics.parentFailed()
	}
}

// body is resp's body as the registry may have it: cut when it sends nothing for BodyTimeout (cancel ends the
// request), and for a whole blob, checked against the digest its path names, the last byte held back until it
// matches.
func (g *Gate) body(resp *http.Response, path string, cancel context.CancelFunc) (io.Reader, func()) {
	what := "parent"
	if resp.Request != nil {
		if r, ok := g.roleOf(hostPort80443(resp.Request.URL)); ok {
			what = string(r)
		}
	}
	body := g.Metrics.countBody(resp.Body)
	stop := func() {}
	if g.BodyTimeout > 0 {
		idle := newIdleReader(body, g.BodyTimeout, what, cancel)
		body, stop = idle, idle.stop
	}
	if resp.Request != nil && resp.Request.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		if m := blobPath.FindStringSubmatch(path); m != nil {
			if v, ok := newVerifier(body, m[2]); ok {
				body = v
			}
		}
	}
	return body, stop
}

// forwardAlone forwards out and streams its answer, unshared.
func (g *Gate) forwardAlone(w http.ResponseWriter, r *http.Request, out *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	resp, err := g.do(out.WithContext(ctx), r.Host)
	if err != nil {
		if _, blob := flightKey(r); blob {
			g.Metrics.fetch(FetchFailed)
		}
		g.badGateway(w, err)
		return
	}
	g.stream(w, r, resp, cancel)
}

// stream sends resp to the registry as it arrives, and closes it; cancel ends resp's request.
func (g *Gate) stream(w http.ResponseWriter, r *http.Request, resp *http.Response, cancel context.CancelFunc) {
	defer resp.Body.Close()
	if !g.checkSpace(w, r, resp) {
		return
	}
	body, stop := g.body(resp, r.URL.Path, cancel)
	defer stop()
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	buf := make([]byte, copyBuffer)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if g.WriteTimeout > 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(g.WriteTimeout))
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
		}
		if errors.Is(rerr, io.EOF) {
			return
		}
		if rerr != nil {
			if r.Context().Err() == nil {
				if blobPath.MatchString(r.URL.Path) {
					g.Metrics.fetch(FetchFailed)
				}
				g.logger().Warn("an answer from the parent broke off", "path", r.URL.Path, "err", rerr)
				// The registry must not take it as complete.
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
}

// flightKey is what makes two requests the same fetch: a GET of one blob of one repository, whole, with the
// same credentials. Anything else (a range, a condition) is not shared.
func flightKey(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet || !blobPath.MatchString(r.URL.Path) || r.URL.RawQuery != "" {
		return "", false
	}
	for _, h := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if r.Header.Get(h) != "" {
			return "", false
		}
	}
	return r.URL.Path + "\x00" + r.Header.Get("Authorization"), true
}

// errSpoolFull makes a request stream unshared: the spool holds SpoolBudget bytes already.
var errSpoolFull = errors.New("the spool is full")

// flight is one fetch of a blob from the parent that any number of requests stream from. The body is spooled
// to a file, so a request that joins late starts from the first byte; the file is removed when the last
// request has its copy.
type flight struct {
	cancel context.CancelFunc
	spool  *os.File
	// readers is the number of requests streaming from the flight; guarded by Gate.mu.
	readers int
	served  int // requests the flight served in all; guarded by Gate.mu
	refs    int // the fetch and every request streaming from spool; guarded by Gate.mu

	mu       sync.Mutex
	cond     *sync.Cond
	ready    bool // status and header are known
	status   int
	header   http.Header
	size     int64 // bytes in spool that readers may send
	reserved int64 // bytes counted against the spool budget
	progress time.Time
	done     bool // the fetch ended; err says how
	err      error
	// handoff is the parent's answer to a fetch too large to spool, for one reader to stream unshared.
	handoff *http.Response
}

// shared serves a blob GET from the flight of its key, starting one when there is none.
func (g *Gate) shared(w http.ResponseWriter, r *http.Request, key string, out *http.Request) {
	f, err := g.join(key, out, r.Host, r.URL.Path)
	if err != nil {
		// No spool: this request fetches on its own, as it would without the gate.
		if !errors.Is(err, errSpoolFull) {
			g.logger().Warn("cannot share a blob fetch", "path", r.URL.Path, "err", err)
		}
		g.Metrics.fetch(FetchStarted)
		g.forwardAlone(w, r, out)
		return
	}
	defer g.leave(key, f)
	stop := context.AfterFunc(r.Context(), func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()

	f.mu.Lock()
	for !f.ready && !f.done && r.Context().Err() == nil {
		f.cond.Wait()
	}
	ready, status, header, ferr := f.ready, f.status, f.header, f.err
	f.mu.Unlock()
	switch {
	case r.Context().Err() != nil:
		return
	case !ready && errors.Is(ferr, errSpoolFull):
		// Too large to spool: the first reader streams the answer already under way, the others ask alone.
		f.mu.Lock()
		resp := f.handoff
		f.handoff = nil
		f.mu.Unlock()
		if resp == nil {
			g.Metrics.fetch(FetchStarted)
			g.forwardAlone(w, r, out)
			return
		}
		defer f.cancel()
		g.stream(w, r, resp, f.cancel)
		return
	case !ready:
		g.badGateway(w, ferr)
		return
	}
	copyHeader(w.Header(), header)
	w.WriteHeader(status)

	// A reader of the spool of its own: from a file of its own offset the kernel sends the bytes to the registry
	// (sendfile), without copying them through the gate.
	src, err := os.Open(f.spool.Name())
	if err != nil {
		g.logger().Warn("reading a spooled blob", "path", r.URL.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
	defer src.Close()
	var off, flushed int64
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	for {
		f.mu.Lock()
		if off == f.size && off > flushed && !f.done {
			// Caught up with the parent: what is written goes out now, not when the next bytes arrive.
			f.mu.Unlock()
			if rc.Flush() != nil {
				return
			}
			flushed = off
			f.mu.Lock()
		}
		for off == f.size && !f.done && r.Context().Err() == nil {
			f.cond.Wait()
		}
		size, done, ferr := f.size, f.done, f.err
		f.mu.Unlock()
		switch {
		case r.Context().Err() != nil:
			return
		case off < size:
			if g.WriteTimeout > 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(g.WriteTimeout))
			}
			n, err := io.Copy(w, io.LimitReader(src, min(size-off, writeChunk)))
			off += n
			if err != nil {
				// The registry stopped reading, or went away.
				return
			}
			if n == 0 {
				// The spool holds fewer bytes than it said: never expected, but do not spin.
				panic(http.ErrAbortHandler)
			}
		case done && ferr != nil:
			// The parent's answer broke off, or was not the blob: so must this one end, or the registry would
			// take it as complete.
			panic(http.ErrAbortHandler)
		default:
			return
		}
	}
}

// join returns the flight of key, started with out when there is none or the one there has gone silent, and
// counts the caller as its reader.
func (g *Gate) join(key string, out *http.Request, gateHost, path string) (*flight, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		f.mu.Lock()
		stalled := !f.done && g.clock()().Sub(f.progress) > g.ResponseTimeout
		f.mu.Unlock()
		if !stalled {
			f.readers++
			f.served++
			f.refs++
			g.Metrics.fetch(FetchShared)
			return f, nil
		}
		// A retry must not wait on a fetch that sends nothing: it starts its own, and the stalled one ends with
		// its readers.
		delete(g.flights, key)
	}
	if g.SpoolBudget > 0 && g.spooled.Load() >= g.SpoolBudget {
		return nil, errSpoolFull
	}
	spool, err := os.CreateTemp(g.SpoolDir, spoolPattern)
	if err != nil {
		return nil, fmt.Errorf("creating a spool file: %w", err)
	}
	// The fetch outlives the request that started it: others may be streaming from it. It ends when the last
	// of them leaves.
	ctx, cancel := context.WithCancel(context.WithoutCancel(out.Context()))
	f := &flight{cancel: cancel, spool: spool, readers: 1, served: 1, refs: 2, progress: g.clock()()} // the fetch and this reader
	f.cond = sync.NewCond(&f.mu)
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	g.flights[key] = f
	g.Metrics.fetch(FetchStarted)
	go g.fetch(key, f, out.WithContext(ctx), gateHost, path)
	return f, nil
}

// leave uncounts a reader; the last one to leave stops a fetch nobody waits for any more.
func (g *Gate) leave(key string, f *flight) {
	g.mu.Lock()
	f.readers--
	f.mu.Lock()
	stop := f.readers == 0 && !f.done
	f.mu.Unlock()
	if stop && g.flights[key] == f {
		delete(g.flights, key)
	}
	g.mu.Unlock()
	if stop {
		f.cancel()
	}
	g.release(f)
}

// release drops a reference to f's spool; the last one removes it.
func (g *Gate) release(f *flight) {
	g.mu.Lock()
	f.refs--
	last := f.refs == 0
	g.mu.Unlock()
	if !last {
		return
	}
	f.mu.Lock()
	if f.handoff != nil {
		f.handoff.Body.Close()
		f.handoff = nil
	}
	f.mu.Unlock()
	f.cancel()
	f.spool.Close()
	if err := os.Remove(f.spool.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		g.logger().Warn("removing a spooled blob", "file", f.spool.Name(), "err", err)
	}
	f.mu.Lock()
	reserved := f.reserved
	f.mu.Unlock()
	g.spooled.Add(-reserved)
}

// fetch asks the parent and spools its answer, waking the readers as bytes arrive.
func (g *Gate) fetch(key string, f *flight, out *http.Request, gateHost, path string) {
	err := g.spool(f, out, gateHost, path)
	if err != nil && !errors.Is(err, errSpoolFull) {
		g.Metrics.fetch(FetchFailed)
	}
	f.mu.Lock()
	f.done, f.err = true, err
	f.cond.Broadcast()
	linger := err == nil && f.status == http.StatusOK && g.Linger > 0
	handoff := f.handoff != nil
	f.mu.Unlock()
	if !handoff {
		f.cancel()
	}

	end := func() {
		g.mu.Lock()
		if g.flights[key] == f {
			delete(g.flights, key)
		}
		served := f.served
		g.mu.Unlock()
		switch {
		case err != nil && !errors.Is(err, errSpoolFull) && served > 0:
			g.logger().Warn("a shared blob fetch failed; every request sharing it was broken off", "path", path, "requests", served, "err", err)
		case served > 1:
			g.logger().Info("one fetch from the parent served concurrent requests", "path", path, "requests", served, "bytes", f.size)
		}
		g.release(f)
	}
	if !linger {
		end()
		return
	}
	// The registry stores the blob only after its first request has streamed all of it: until then, its other
	// requests for the blob come here. They get the spooled copy.
	time.AfterFunc(g.Linger, end)
}

func (g *Gate) spool(f *flight, out *http.Request, gateHost, path string) error {
	resp, err := g.do(out, gateHost)
	if err != nil {
		return err
	}
	if n := resp.ContentLength; n > 0 && resp.StatusCode == http.StatusOK {
		if g.SpoolBudget > 0 && g.spooled.Load()+n > g.SpoolBudget {
			f.mu.Lock()
			f.handoff = resp
			f.mu.Unlock()
			return errSpoolFull
		}
		g.spooled.Add(n)
		f.mu.Lock()
		f.reserved = n
		f.mu.Unlock()
	}
	defer resp.Body.Close()
	body, stop := g.body(resp, path, f.cancel)
	defer stop()
	f.mu.Lock()
	f.ready, f.status, f.header = true, resp.StatusCode, resp.Header
	f.cond.Broadcast()
	f.mu.Unlock()

	buf := make([]byte, 256<<10)
	for {
		// A TLS record is 16 KiB at most: gather a few before spooling, so readers wake and write in larger
		// pieces. On a slow link this holds bytes back for the time 64 KiB takes to arrive.
		var n int
		var rerr error
		for n < 64<<10 && rerr == nil {
			var m int
			m, rerr = body.Read(buf[n:])
			n += m
		}
		if n > 0 {
			if _, err := f.spool.Write(buf[:n]); err != nil {
				return fmt.Errorf("spooling the blob: %w", err)
			}
			f.mu.Lock()
			f.size += int64(n)
			f.progress = g.clock()()
			if grown := f.size - f.reserved; grown > 0 {
				f.reserved += grown
				g.spooled.Add(grown)
			}
			f.cond.Broadcast()
			f.mu.Unlock()
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
