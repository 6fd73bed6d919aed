// Package parentgate is the registry's way to its parent: a reverse proxy, on the pod's loopback, for the
// parent's registry API. The registry's proxy.remoteurl names the gate in plain HTTP; the gate speaks TLS to the
// parent, to the token endpoint the parent announces and to the storage hosts the parent redirects blobs to, and
// to nothing else.
//
// It does four things Distribution's pull-through proxy does not do on its own:
//
//   - Token auth behind a proxy. Distribution keeps a Bearer challenge only when the realm's host:port equals its
//     remoteurl's, or both share a registrable domain, which a loopback address never does. The gate rewrites the
//     realm of every challenge to a token path of its own and forwards token requests to the realm the parent
//     announced, so the registry authenticates exactly as it would pointed at the parent. It also keeps each token
//     until shortly before it expires and hands it out again: Distribution asks for a token on every request.
//   - Bounded waits. Distribution's timeouts are fixed in its code: a parent that accepts connections and never
//     answers holds every tag pull for the 10 s TLS handshake timeout, and one that hangs on a kept-alive
//     connection holds it until the client gives up. The gate watches every connection it opens: when bytes it
//     sent stay unanswered for ResponseTimeout, and the parent has sent nothing on any connection for as long, it
//     cuts the connection, and for Cooldown refuses new connections to that host at once, so the registry serves
//     its cache without waiting. A body that stops arriving for BodyTimeout is cut too.
//   - One fetch per blob. Distribution fetches a blob from the parent once per concurrent request: only the
//     first request stores it, every other one streams its own copy. With ShareFetches, concurrent GETs of one
//     blob share one fetch, spooled to a file every request streams from as the bytes arrive.
//   - Checked bytes. A blob's bytes are hashed as they stream; the last byte goes out only when the digest
//     matches, so no request ever gets a complete body that is not the blob it asked for.
package parentgate

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TokenPath is where the gate answers the registry's token requests; the realm it rewrites challenges to.
const TokenPath = "/_gate/token"

// Gate is the proxy. Its zero value is not usable: set Parent and the durations.
type Gate struct {
	// Parent is the parent registry's URL (https://host[:port]). Only GET and HEAD of its registry API (/v2/) are
	// forwarded.
	Parent *url.URL
	// TLSConfig is used for connections to the parent, its token endpoint and its storage hosts; nil verifies
	// them against the system roots (SSL_CERT_FILE). The gate speaks HTTP/1.1.
	TLSConfig *tls.Config
	// ShareFetches lets concurrent GETs of one blob share one fetch, spooled in SpoolDir.
	ShareFetches bool
	// SpoolDir holds the blobs shared fetches stream from; empty is os.TempDir(). Give the gate a directory of its
	// own: Sweep empties it.
	SpoolDir string
	// SpoolBudget caps the bytes spooled at once; a fetch that would exceed it streams unshared. 0: no cap.
	SpoolBudget int64
	// Linger is how long a blob fetched whole stays spooled for requests that come after the fetch ended, while
	// the registry is still storing it.
	Linger time.Duration

	// ResponseTimeout is how long bytes sent to the parent may stay unanswered, from the TLS handshake to every
	// request on a kept-alive connection.
	ResponseTimeout time.Duration
	// BodyTimeout is how long a response body may send nothing before the gate cuts it; 0: no limit.
	BodyTimeout time.Duration
	// WriteTimeout is how long the registry may accept no bytes of an answer before the gate cuts its request,
	// so a reader that stops cannot pin a spooled blob; 0: no limit.
	WriteTimeout time.Duration
	// DialTimeout bounds connecting to a host (or to the outbound proxy).
	DialTimeout time.Duration
	// Cooldown is how long the gate refuses new connections to a host it found silent or unreachable.
	Cooldown time.Duration
	// Upstream returns the outbound proxy for a target host:port, nil to dial it directly.
	Upstream func(target string) (*url.URL, error)
	// Peers, with several registry replicas, routes each blob's fetch to the replica that owns its digest, so the
	// replicas fetch it once between them; nil fetches every blob here.
	Peers *Peers
	// Log receives the gate's reports; nil discards them.
	Log *slog.Logger
	// Metrics receives the gate's counts (NewMetrics); nil counts nothing.
	Metrics *Metrics
	// Space, when set, is the registry's cache volume: a HEAD of a blob that would not fit is answered 507, logged
	// once with FullHint, the value that fixes it (space.go).
	Space    Space
	FullHint string

	mu      sync.Mutex
	flights map[string]*flight       // shared blob fetches, by flightKey
	down    map[string]time.Time     // host:port → refused until
	seen    map[string]*atomic.Int64 // host:port → unix nanos of the last bytes it sent on any connection
	hosts   map[string]role          // host:port the gate may reach → what it is
	realms  map[string]bool          // token realms the parent announced
	// reported is when a refusal of the parent was last logged, by what, account and answer.
	reported map[string]time.Time
	now      func() time.Time

	spooled atomic.Int64 // bytes reserved by spooled blobs

	tokens tokenCache
	full   fullReport

	clientOnce sync.Once
	client     *http.Client
}

// role is what a host the gate reaches is to the parent; log lines name it.
type role string

const (
	roleParent  role = "parent"
	roleRealm   role = "token endpoint"
	roleStorage role = "storage host"
)

// ServeHTTP forwards the registry's requests: token requests to the realm the parent announced, the registry
// API to the parent. Anything else is refused.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, fmt.Sprintf("the parent gate forwards only GET and HEAD to the parent, not %s: the connected registry only reads from it", r.Method), http.StatusMethodNotAllowed)
		return
	}
	if err := checkPath(r.URL); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case r.URL.Path == TokenPath:
		g.token(w, r)
	case r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/"):
		g.forward(w, r)
	default:
		http.Error(w, fmt.Sprintf("the parent gate forwards only the registry API (/v2/) and token requests, not %q", r.URL.Path), http.StatusNotFound)
	}
}

// checkPath refuses a path that names something other than it seems: a dot segment, an encoded dot or slash,
// or a path that cleaning would change.
func checkPath(u *url.URL) error {
	raw := u.EscapedPath()
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return fmt.Errorf("the parent gate refuses encoded dots and slashes in %q", raw)
	}
	p := u.Path
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("the parent gate refuses dot segments in %q", raw)
		}
	}
	if strings.Contains(p, "//") || strings.ContainsAny(p, "\\\x00") {
		return fmt.Errorf("the parent gate refuses the path %q", raw)
	}
	return nil
}

// allow records host:port as one the gate may reach, unless it is already known.
func (g *Gate) allow(hostPort string, r role) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hosts == nil {
		g.hosts = map[string]role{}
	}
	hostPort = strings.ToLower(hostPort)
	if _, ok := g.hosts[hostPort]; !ok {
		g.hosts[hostPort] = r
	}
}

// roleOf tells what hostPort is to the parent, and whether the gate may reach it at all.
func (g *Gate) roleOf(hostPort string) (role, bool) {
	if g.Parent != nil && strings.EqualFold(hostPort, hostPort80443(g.Parent)) {
		return roleParent, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.hosts[strings.ToLower(hostPort)]
	return r, ok
}

func (g *Gate) logger() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}

// lastSeen returns the clock of the last bytes target sent on any connection.
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

// downError is the refusal of a host the gate found silent or unreachable less than Cooldown ago.
type downError struct {
	target string
	role   role
	until  time.Time
}

func (e *downError) Error() string {
	return fmt.Sprintf("%s %s did not answer; the gate refuses connections to it until %s", e.role, e.target, e.until.Format(time.RFC3339))
}

// connect opens a watched connection to target (host:port), or refuses at once while target is down or is not
// a host the parent named.
func (g *Gate) connect(ctx context.Context, target string) (*watchedConn, error) {
	r, ok := g.roleOf(target)
	if !ok {
		return nil, fmt.Errorf("the parent gate reaches only the parent, its token endpoint and its storage hosts, not %s", target)
	}
	if until, ok := g.isDown(target); ok {
		return nil, &downError{target: target, role: r, until: until}
	}
	ctx, cancel := context.WithTimeout(ctx, g.DialTimeout)
	defer cancel()
	up, err := g.dial(ctx, target)
	if err != nil {
		g.markDown(target, "connecting failed: "+err.Error())
		return nil, fmt.Errorf("connecting to %s %s: %w", r, target, err)
	}
	return g.watch(target, up, up.Close), nil
}

// watchedConn is a connection the gate cuts when its host is silent: bytes written to it unanswered for
// ResponseTimeout, from the TLS handshake to every request on a kept-alive connection, while the host sent
// nothing on any connection for as long. A response that has begun is not watched here (see BodyTimeout).
type watchedConn struct {
	net.Conn
	g          *Gate
	target     string
	now        func() time.Time
	seen       *atomic.Int64 // unix nanos of the last bytes target sent on any connection
	unanswered atomic.Int64  // unix nanos of the oldest bytes written that target has not answered; 0: none
	closed     chan struct{}
	once       sync.Once
	// cut closes the TCP connection under Conn at once. For TLS it must not send a closing alert first: the
	// host would answer it, and the answer could be read before the connection is gone.
	cut func() error
}

func (g *Gate) watch(target string, c net.Conn, cut func() error) *watchedConn {
	w := &watchedConn{Conn: c, g: g, target: target, now: g.clock(), seen: g.lastSeen(target), closed: make(chan struct{}), cut: cut}
	go w.watch()
	return w
}

func (w *watchedConn) Write(p []byte) (int, error) {
	if len(p) > 0 {
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
				_ = w.cut()
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
		// Let this one try: the host may be back.
		delete(g.down, target)
		return time.Time{}, false
	}
	return until, true
}

// markDown refuses target for Cooldown, and says so in a line that names what target is to the parent.
func (g *Gate) markDown(target, why string) {
	until := g.clock()().Add(g.Cooldown)
	g.mu.Lock()
	if g.down == nil {
		g.down = map[string]time.Time{}
	}
	g.down[target] = until
	g.mu.Unlock()
	if g.isParent(target) {
		g.Metrics.parentFailed()
	}
	r, _ := g.roleOf(target)
	msg := map[role]string{
		roleParent:  "parent unreachable: the registry serves its cache",
		roleRealm:   "token endpoint unreachable: the registry cannot authenticate to its parent and serves its cache",
		roleStorage: "storage host unreachable: blobs the parent redirects there cannot be fetched; the registry serves its cache",
	}[r]
	if msg == "" {
		msg = "host unreachable"
	}
	g.logger().Warn(msg, "host", target, "reason", why, "refusing until", until.Format(time.RFC3339))
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

// hostPort80443 is u's host:port, with the scheme's default port when u names none.
func hostPort80443(u *url.URL) string {
	if u.Scheme == "http" {
		return hostPort(u, "80")
	}
	return hostPort(u, "443")
}
