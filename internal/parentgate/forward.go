package parentgate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// blobPath matches a blob of the OCI distribution API: /v2/<name>/blobs/<algorithm>:<hex>.
var blobPath = regexp.MustCompile(`^/v2/(.+)/blobs/([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$`)

// hopByHop are the headers of one connection, not of the request (RFC 9110 section 7.6.1).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forward sends a request of the registry to Parent and its answer back. Concurrent GETs of one blob share one
// fetch (see shared); everything else is forwarded as it comes.
func (g *Gate) forward(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, fmt.Sprintf("the parent gate forwards only GET and HEAD to the parent, not %s: the connected registry only reads from it", r.Method), http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/v2" && !strings.HasPrefix(r.URL.Path, "/v2/") {
		http.Error(w, fmt.Sprintf("the parent gate forwards only the registry API (/v2/), not %q", r.URL.Path), http.StatusNotFound)
		return
	}
	out := g.outgoing(r)
	if key, ok := flightKey(r); ok {
		g.shared(w, r, key, out)
		return
	}
	g.forwardAlone(w, r, out)
}

// outgoing is r, addressed to Parent, without the headers of the registry's connection to the gate.
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

// badGateway answers a request the parent could not be asked: 503 while the gate refuses the parent, 502
// otherwise. Either way the registry serves its cache, if it has the content.
func (g *Gate) badGateway(w http.ResponseWriter, err error) {
	var down *downError
	if errors.As(err, &down) {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.Error(w, fmt.Sprintf("asking the parent: %v", err), http.StatusBadGateway)
}

// httpClient is the gate's client to Parent: every connection is watched (connectTLS), HTTP/1.1, bodies as
// the parent sends them, redirects followed (a registry may send blobs from a storage host, and the client
// drops the credentials when the host changes).
func (g *Gate) httpClient() *http.Client {
	g.clientOnce.Do(func() {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				c, err := g.connect(ctx, addr, nil)
				if err != nil {
					return nil, err
				}
				return c, nil
			},
			DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return g.connectTLS(ctx, addr)
			},
			DisableCompression:  true,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
		}
		g.client = &http.Client{Transport: tr}
	})
	return g.client
}

// tlsHandshakeLimit bounds a TLS handshake with a parent that answers, but slowly, as Go's default transport
// does; a silent one is cut after ResponseTimeout.
const tlsHandshakeLimit = 10 * time.Second

// connectTLS opens a TLS connection to target (host:port) and watches what it carries: the handshake on the
// wire, then the requests and responses. The handshake's last message, the client's Finished, has no answer,
// nor do TLS's own later messages (a key update, the closing alert): watching the wire after the handshake
// would take an idle connection for a silent parent.
func (g *Gate) connectTLS(ctx context.Context, target string) (net.Conn, error) {
	raw, err := g.connect(ctx, target, nil)
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
		return nil, fmt.Errorf("TLS handshake with parent %s: %w", target, err)
	}
	raw.disarm()
	return g.watch(target, tc, nil), nil
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

// flight is one fetch of a blob from the parent that any number of requests stream from. The body is spooled
// to an unlinked file, so a request that joins late starts from the first byte, and nothing is left behind
// whatever happens to the process.
type flight struct {
	cancel context.CancelFunc
	spool  *os.File
	refs   atomic.Int32 // the fetch and every request streaming from spool; the last one closes it
	// readers is the number of requests streaming from the flight; guarded by Gate.mu.
	readers int
	served  int // requests the flight served in all; guarded by Gate.mu

	mu     sync.Mutex
	cond   *sync.Cond
	ready  bool // status and header are known
	status int
	header http.Header
	size   int64 // bytes in spool
	done   bool  // the fetch ended; err says how
	err    error
}

// shared serves a blob GET from the flight of its key, starting one when there is none.
func (g *Gate) shared(w http.ResponseWriter, r *http.Request, key string, out *http.Request) {
	f, err := g.join(key, out)
	if err != nil {
		// No spool: this request fetches on its own, as it would without the gate.
		if g.Log != nil {
			g.Log.Warn("cannot share a blob fetch", "path", r.URL.Path, "error", err)
		}
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
	if r.Context().Err() != nil {
		return
	}
	if !ready {
		g.badGateway(w, ferr)
		return
	}
	copyHeader(w.Header(), header)
	w.WriteHeader(status)

	// A reader of the spool of its own: from a file of its own offset the kernel sends the bytes to the registry
	// (sendfile), without copying them through the gate.
	src := f.reader()
	defer src.Close()
	var off, flushed int64
	rc := http.NewResponseController(w)
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
			n, err := io.Copy(w, io.LimitReader(src, size-off))
			off += n
			if err != nil {
				if r.Context().Err() == nil && n == 0 {
					panic(http.ErrAbortHandler)
				}
				return
			}
			if n == 0 {
				// The spool holds fewer bytes than it said: never expected, but do not spin.
				panic(http.ErrAbortHandler)
			}
		case done && ferr != nil:
			// The parent's answer broke off: so must this one, or the registry would take it as complete.
			panic(http.ErrAbortHandler)
		default:
			return
		}
	}
}

// reader returns a reader of the spool from its start: a file of its own offset where /proc/self/fd lets the
// gate open the unlinked spool again, else a section reader over the shared file.
func (f *flight) reader() io.ReadCloser {
	if rf, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", f.spool.Fd())); err == nil {
		return rf
	}
	return io.NopCloser(io.NewSectionReader(f.spool, 0, math.MaxInt64))
}

// forwardAlone forwards out and streams its answer, unshared.
func (g *Gate) forwardAlone(w http.ResponseWriter, r *http.Request, out *http.Request) {
	resp, err := g.httpClient().Do(out)
	if err != nil {
		g.badGateway(w, err)
		return
	}
	defer resp.Body.Close()
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	if _, err := io.CopyBuffer(w, resp.Body, make([]byte, 64<<10)); err != nil && r.Context().Err() == nil {
		// The parent's answer broke off: so must this one, or the registry would take it as complete.
		panic(http.ErrAbortHandler)
	}
}

// join returns the flight of key, started with out when there is none, and counts the caller as its reader.
func (g *Gate) join(key string, out *http.Request) (*flight, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		f.readers++
		f.served++
		f.refs.Add(1)
		return f, nil
	}
	spool, err := os.CreateTemp(g.SpoolDir, "blob-*")
	if err != nil {
		return nil, fmt.Errorf("creating a spool file: %w", err)
	}
	if err := os.Remove(spool.Name()); err != nil {
		spool.Close()
		return nil, fmt.Errorf("unlinking spool file %s: %w", spool.Name(), err)
	}
	// The fetch outlives the request that started it: others may be streaming from it. It ends when the last
	// of them leaves.
	ctx, cancel := context.WithCancel(context.WithoutCancel(out.Context()))
	f := &flight{cancel: cancel, spool: spool, readers: 1, served: 1}
	f.cond = sync.NewCond(&f.mu)
	f.refs.Store(2) // the fetch and this reader
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	g.flights[key] = f
	go g.fetch(key, f, out.WithContext(ctx))
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
	f.release()
}

func (f *flight) release() {
	if f.refs.Add(-1) == 0 {
		f.spool.Close()
	}
}

// fetch asks the parent and spools its answer, waking the readers as bytes arrive.
func (g *Gate) fetch(key string, f *flight, out *http.Request) {
	err := g.spool(f, out)
	f.mu.Lock()
	f.done, f.err = true, err
	f.cond.Broadcast()
	linger := err == nil && f.status == http.StatusOK && g.Linger > 0
	f.mu.Unlock()
	f.cancel()

	end := func() {
		g.mu.Lock()
		if g.flights[key] == f {
			delete(g.flights, key)
		}
		served := f.served
		g.mu.Unlock()
		if served > 1 && g.Log != nil {
			g.Log.Info("one fetch from the parent served concurrent requests", "path", out.URL.Path, "requests", served, "bytes", f.size, "error", err)
		}
		f.release()
	}
	if !linger {
		end()
		return
	}
	// The registry stores the blob only after its first request has streamed all of it: until then, its other
	// requests for the blob come here. They get the spooled copy.
	time.AfterFunc(g.Linger, end)
}

func (g *Gate) spool(f *flight, out *http.Request) error {
	resp, err := g.httpClient().Do(out)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
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
			m, rerr = resp.Body.Read(buf[n:])
			n += m
		}
		if n > 0 {
			if _, err := f.spool.Write(buf[:n]); err != nil {
				return fmt.Errorf("spooling the blob: %w", err)
			}
			f.mu.Lock()
			f.size += int64(n)
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
