package parentgate

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// PeerSecretHeader carries the secret the replicas of one release share: a gate serves a peer's request only
// with it, since its peer port is on the pod network.
const PeerSecretHeader = "X-Connected-Registry-Peer-Secret"

// peerRefusedHeader marks a gate's refusal of a peer request, apart from a refusal of the parent it relays.
const peerRefusedHeader = "X-Connected-Registry-Peer-Refused"

// peerLookupTimeout bounds one lookup of the members.
const peerLookupTimeout = 2 * time.Second

// ErrPeerSecret refuses a peer request without the release's shared secret.
var ErrPeerSecret = errors.New("the parent gate serves a peer only with the release's shared secret")

// Peers makes the gates of several registry replicas fetch each blob once between them. Every gate maps a blob's
// digest to one owner among the members by rendezvous hashing (the member with the highest hash of member and
// digest), so all gates agree on the owner without talking to each other, and a member that leaves moves only
// its own blobs. A gate that is not the owner forwards the registry's GET to the owner's peer port; the owner
// serves it from its shared fetch (one per blob) like a request of its own registry. When the owner cannot be
// reached, the gate fetches from the parent itself and avoids that owner for the gate's Cooldown.
type Peers struct {
	// Self is this gate's peer address (pod IP:port), as the other members know it.
	Self string
	// Secret is the release's shared secret; every peer request carries it.
	Secret string
	// Lookup returns the members' peer addresses (host:port), this gate's among them or not; the chart's is the
	// headless Service's ready endpoints (ResolveMembers).
	Lookup func(ctx context.Context) ([]string, error)
	// Refresh is how long a lookup's members are used before the next lookup.
	Refresh time.Duration

	lookupMu sync.Mutex // held during a lookup
	mu       sync.Mutex
	members  []string
	looked   time.Time
	avoid    map[string]time.Time // member → not asked until
	client   *http.Client
}

// ResolveMembers returns a Lookup of the addresses name resolves to (a headless Service: one address per ready
// pod), each with port. name may list several names, comma-separated, whose addresses are joined: where no DNS
// lists the replicas (the storage benchmark's replicas on loopback addresses), their addresses themselves.
func ResolveMembers(name, port string) func(ctx context.Context) ([]string, error) {
	names := strings.Split(name, ",")
	return func(ctx context.Context) ([]string, error) {
		var out []string
		for _, n := range names {
			ips, err := net.DefaultResolver.LookupHost(ctx, strings.TrimSpace(n))
			if err != nil {
				return nil, fmt.Errorf("looking up the replicas at %q: %w", n, err)
			}
			for _, ip := range ips {
				out = append(out, net.JoinHostPort(ip, port))
			}
		}
		return out, nil
	}
}

// Owner returns the member that fetches digest for every replica, among the members that are not avoided.
func (p *Peers) Owner(ctx context.Context, digest string, now time.Time) string {
	members := p.current(ctx, now)
	best, bestScore := p.Self, score(p.Self, digest)
	for _, m := range members {
		if s := score(m, digest); s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// score is the rendezvous hash of member and digest.
func score(member, digest string) uint64 {
	h := sha256.Sum256([]byte(member + "\x00" + digest))
	return binary.BigEndian.Uint64(h[:8])
}

// current returns the members to choose from: the last lookup's (a new one when it is older than Refresh), less
// the avoided ones.
func (p *Peers) current(ctx context.Context, now time.Time) []string {
	// One lookup at a time; a request that comes meanwhile waits for it rather than choosing among stale or no
	// members, which would make it the owner of every blob.
	p.lookupMu.Lock()
	p.mu.Lock()
	stale := p.looked.IsZero() || now.Sub(p.looked) >= p.Refresh
	p.mu.Unlock()
	if stale && p.Lookup != nil {
		lctx, cancel := context.WithTimeout(ctx, peerLookupTimeout)
		ms, err := p.Lookup(lctx)
		cancel()
		p.mu.Lock()
		p.looked = now
		if err == nil {
			slices.Sort(ms)
			p.members = slices.Compact(ms)
		}
		p.mu.Unlock()
	}
	p.lookupMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.members))
	for _, m := range p.members {
		if until, ok := p.avoid[m]; ok && now.Before(until) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// avoidFor keeps member out of the choice until until.
func (p *Peers) avoidFor(member string, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.avoid == nil {
		p.avoid = map[string]time.Time{}
	}
	p.avoid[member] = until
}

// httpClient is the client of peer requests: plain HTTP on the pod network, connecting within dial.
func (p *Peers) httpClient(dial time.Duration) *http.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		d := &net.Dialer{Timeout: dial}
		p.client = &http.Client{
			Transport: &http.Transport{
				DialContext:         d.DialContext,
				DisableCompression:  true,
				MaxIdleConnsPerHost: maxIdleConnsPerHost,
				IdleConnTimeout:     idleConnTimeout,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return p.client
}

// PeerHandler serves the other replicas' gates on the peer port: a GET of a blob with the shared secret, as a
// request of this gate's own registry (sharing its fetch). Nothing else.
func (g *Gate) PeerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.Peers == nil || g.Peers.Secret == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(PeerSecretHeader)), []byte(g.Peers.Secret)) != 1 {
			w.Header().Set(peerRefusedHeader, "secret")
			http.Error(w, ErrPeerSecret.Error(), http.StatusForbidden)
			return
		}
		if err := checkPath(r.URL); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Header.Del(PeerSecretHeader)
		if _, ok := flightKey(r); !ok {
			http.Error(w, "the parent gate's peer port serves only whole GETs of blobs", http.StatusNotFound)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), fromPeerKey{}, true))
		g.forward(w, r)
	})
}

// fromPeerKey marks a request another replica's gate forwarded: it is never forwarded again.
type fromPeerKey struct{}

// toOwner forwards a blob GET to the member that owns its digest, and reports whether it answered the request:
// false when this gate is the owner, or the owner could not be asked (the caller then fetches from the parent).
func (g *Gate) toOwner(w http.ResponseWriter, r *http.Request, digest string) bool {
	p := g.Peers
	if p == nil || r.Context().Value(fromPeerKey{}) != nil {
		return false
	}
	now := g.clock()()
	owner := p.Owner(r.Context(), digest, now)
	if owner == p.Self {
		return false
	}
	out, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+owner+r.URL.Path, nil)
	if err != nil {
		return false
	}
	copyHeader(out.Header, r.Header)
	// The owner's gate answers as this one would: a challenge's realm names the registry's own gate.
	out.Host = r.Host
	out.Header.Set(PeerSecretHeader, p.Secret)
	resp, err := g.askOwner(out)
	if err != nil {
		if r.Context().Err() != nil {
			return true
		}
		p.avoidFor(owner, now.Add(g.Cooldown))
		g.logger().Warn("the replica that owns a blob did not answer: asking the next owner, or the parent from here", "owner", owner, "path", r.URL.Path, "err", err)
		// The other replicas find the owner gone too, and agree on the next one: asking it keeps the one fetch.
		return g.toOwner(w, r, digest)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden && resp.Header.Get(peerRefusedHeader) != "" {
		// A gate of another release, or with another secret: ask the parent.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		p.avoidFor(owner, now.Add(g.Cooldown))
		g.logger().Warn("the replica that owns a blob refused this gate's peer request: fetching it from the parent here", "owner", owner, "path", r.URL.Path)
		return false
	}
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if g.BodyTimeout > 0 {
		idle := newIdleReader(resp.Body, g.BodyTimeout, "the owner replica "+owner, func() { resp.Body.Close() })
		defer idle.stop()
		body = idle
	}
	buf := make([]byte, copyBuffer)
	from := &readErrs{r: body}
	sent, err := io.CopyBuffer(w, from, buf)
	if err == nil || from.err == nil || r.Context().Err() != nil {
		// Done, or the registry stopped reading: nothing to send it any more.
		return true
	}
	p.avoidFor(owner, now.Add(g.Cooldown))
	if resp.StatusCode != http.StatusOK {
		g.logger().Warn("an answer from the owner replica broke off", "owner", owner, "path", r.URL.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
	// The owner went away mid-blob (its pod deleted, its node lost). The registry has the first bytes already:
	// breaking its request off would make it fail the pull, and Distribution would then write its error after
	// those bytes, which a client that resumes a download (containerd) keeps as blob content. So this gate gets
	// the blob again without that owner, from the next owner or the parent, and sends the rest.
	g.logger().Warn("a blob from the owner replica broke off: getting the rest without it", "owner", owner, "path", r.URL.Path, "bytes", sent, "err", err)
	g.forward(&resumeWriter{w: w, skip: sent}, r)
	return true
}

// resumeWriter continues an answer whose status, headers and first skip bytes went out already: it takes a new
// whole answer of the same blob and sends only what follows them. Any status other than 200 breaks the
// request off: the registry must not take a short body as the blob.
type resumeWriter struct {
	w      http.ResponseWriter
	skip   int64
	header http.Header
}

func (rw *resumeWriter) Header() http.Header {
	if rw.header == nil {
		rw.header = http.Header{}
	}
	return rw.header
}

func (rw *resumeWriter) WriteHeader(code int) {
	if code != http.StatusOK {
		panic(http.ErrAbortHandler)
	}
}

func (rw *resumeWriter) Write(b []byte) (int, error) {
	n := len(b)
	if rw.skip >= int64(n) {
		rw.skip -= int64(n)
		return n, nil
	}
	b = b[rw.skip:]
	rw.skip = 0
	if _, err := rw.w.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// Unwrap lets http.ResponseController reach the registry's connection (flushes, write deadlines).
func (rw *resumeWriter) Unwrap() http.ResponseWriter { return rw.w }

// askOwner sends out, a blob GET, to the owner's peer port. When the parent refuses the token it carries, the
// owner cannot renew it: only the gate that handed the token to its registry knows where it came from. So this
// gate renews it and asks the owner once more, as it would retry a request of its own to the parent (do).
// Without that, a token the parent stops taking (a restart with new keys, a revocation) would fail every blob
// another replica owns until the token's lifetime ends here.
func (g *Gate) askOwner(out *http.Request) (*http.Response, error) {
	client := g.Peers.httpClient(g.DialTimeout)
	resp, err := client.Do(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	retry, ok := g.retryWithFreshToken(out)
	if !ok {
		return resp, nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return client.Do(retry)
}

// readErrs remembers the error of reading r, apart from an error of writing what was read.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
