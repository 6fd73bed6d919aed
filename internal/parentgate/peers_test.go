package parentgate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

// replica is one registry replica's gate: its loopback URL (the registry's remoteurl) and its peer server.
type replica struct {
	gate *Gate
	url  string
	peer *httptest.Server
}

// replicaSet starts n gates in front of parent, each with a peer port on 127.0.0.1, that know each other through
// members (which a test may change, as the headless Service's endpoints change).
func replicaSet(t *testing.T, parent *httptest.Server, n int, secret string) ([]*replica, *memberList) {
	t.Helper()
	members := &memberList{}
	var rs []*replica
	for range n {
		g, gate := forwardingGate(t, parent)
		// Long enough to connect on a loaded machine under the race detector: a connection that takes longer
		// counts as a replica gone, which the fallback test covers.
		g.DialTimeout = 5 * time.Second
		peer := httptest.NewServer(g.PeerHandler())
		t.Cleanup(peer.Close)
		members.add(peer.Listener.Addr().String())
		g.Peers = &Peers{Self: peer.Listener.Addr().String(), Secret: secret, Lookup: members.lookup, Refresh: time.Hour}
		rs = append(rs, &replica{gate: g, url: gate, peer: peer})
	}
	return rs, members
}

type memberList struct {
	mu sync.Mutex
	ms []string
}

func (m *memberList) add(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ms = append(m.ms, s)
}

func (m *memberList) lookup(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ms...), nil
}

// countingParent serves blobs of content, counting GETs by path; hold, when set, is received before the second
// half of every body.
type countingParent struct {
	*httptest.Server
	mu    sync.Mutex
	gets  map[string]int
	blobs map[string][]byte
	hold  chan struct{}
}

func newCountingParent(t *testing.T, hold chan struct{}, blobs ...[]byte) *countingParent {
	t.Helper()
	p := &countingParent{gets: map[string]int{}, blobs: map[string][]byte{}, hold: hold}
	for _, b := range blobs {
		p.blobs[blobPathOf(b)] = b
	}
	p.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.gets[r.URL.Path]++
		content, ok := p.blobs[r.URL.Path]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.Write(content[:len(content)/2])
		w.(http.Flusher).Flush()
		if p.hold != nil {
			<-p.hold
		}
		w.Write(content[len(content)/2:])
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *countingParent) getsOf(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[path]
}

func blobPathOf(b []byte) string {
	return fmt.Sprintf("/v2/test/app/blobs/sha256:%x", sha256.Sum256(b))
}

func TestOwnerRouting(t *testing.T) {
	t.Parallel()

	t.Run("every gate should name the same owner for a digest, and a member that leaves should move only its own digests", func(t *testing.T) {
		t.Parallel()
		all := []string{"10.0.0.1:5129", "10.0.0.2:5129", "10.0.0.3:5129"}
		now := time.Unix(1e9, 0)
		owners := map[string]string{}
		count := map[string]int{}
		for i := range 300 {
			digest := fmt.Sprintf("sha256:%064x", i)
			var seen []string
			for _, self := range all {
				p := &Peers{Self: self, Lookup: func(context.Context) ([]string, error) { return all, nil }, Refresh: time.Hour}
				seen = append(seen, p.Owner(t.Context(), digest, now))
			}
			require.Equal(t, []string{seen[0], seen[0], seen[0]}, seen, "the gates disagree on the owner of %s", digest)
			owners[digest] = seen[0]
			count[seen[0]]++
		}
		for _, m := range all {
			require.Greater(t, count[m], 50, "member %s owns too few of 300 digests: %v", m, count)
		}
		rest := all[:2]
		for digest, owner := range owners {
			p := &Peers{Self: rest[0], Lookup: func(context.Context) ([]string, error) { return rest, nil }, Refresh: time.Hour}
			got := p.Owner(t.Context(), digest, now)
			if owner != all[2] {
				require.Equal(t, owner, got, "digest %s moved although its owner stayed", digest)
			} else {
				require.NotEqual(t, all[2], got)
			}
		}
	})

	t.Run("concurrent GETs of blobs through three replicas' gates should make one parent fetch per blob, and every request get every byte", func(t *testing.T) {
		t.Parallel()
		hold := make(chan struct{})
		var contents [][]byte
		for i := range 4 {
			contents = append(contents, bytes.Repeat([]byte{byte('a' + i)}, 256<<10+i))
		}
		parent := newCountingParent(t, hold, contents...)
		var once sync.Once
		release := func() { once.Do(func() { close(hold) }) }
		rs, _ := replicaSet(t, parent.Server, 3, "release-secret")
		t.Cleanup(release) // before the servers close, even when the test fails
		logs := &syncbuf.Buffer{}
		for _, r := range rs {
			r.gate.Log = slog.New(slog.NewTextHandler(logs, nil))
		}

		const perReplica = 3
		type result struct {
			want, got []byte
			status    int
			err       error
		}
		results := make(chan result, len(contents)*len(rs)*perReplica)
		for _, c := range contents {
			for i, r := range rs {
				for range perReplica {
					go func() {
						// Each replica's registry has a token of its own; the fetch is shared all the same.
						resp, body, err := getWith(t, r.url+blobPathOf(c), http.Header{"Authorization": {"Bearer replica-" + strconv.Itoa(i)}})
						st := 0
						if resp != nil {
							st = resp.StatusCode
						}
						results <- result{c, body, st, err}
					}()
				}
			}
		}
		// Every request waits on the fetch of its blob's owner before the parent sends the second half.
		joined := func() int {
			n := 0
			for _, c := range contents {
				for _, r := range rs {
					n += r.gate.readersOf(blobPathOf(c))
				}
			}
			return n
		}
		for deadline := time.Now().Add(time.Minute); joined() < cap(results); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				gets := map[string]int{}
				for _, c := range contents {
					gets[blobPathOf(c)[len("/v2/test/app/blobs/"):][:16]] = parent.getsOf(blobPathOf(c))
				}
				t.Fatalf("%d of %d requests joined a fetch; parent GETs by blob: %v; gate logs:\n%s", joined(), cap(results), gets, logs)
			}
		}
		release()
		for range cap(results) {
			r := <-results
			require.NoError(t, r.err)
			require.Equal(t, http.StatusOK, r.status)
			require.True(t, bytes.Equal(r.want, r.got), "a request got other bytes than the parent sent")
		}
		for _, c := range contents {
			require.Equal(t, 1, parent.getsOf(blobPathOf(c)), "the parent should send each blob once across the replicas; gate logs:\n%s", logs)
		}
	})

	t.Run("a gate whose owner is gone should fetch the blob from the parent itself, and avoid the owner afterwards", func(t *testing.T) {
		t.Parallel()
		content := bytes.Repeat([]byte("owner gone "), 100_000)
		parent := newCountingParent(t, nil, content)
		rs, _ := replicaSet(t, parent.Server, 3, "release-secret")
		path := blobPathOf(content)
		owner := rs[0].gate.Peers.Owner(t.Context(), path[len("/v2/test/app/blobs/"):], time.Now())
		var asker *replica
		for _, r := range rs {
			if r.gate.Peers.Self == owner {
				r.peer.Close() // the owner's pod is gone; the Service still lists it
			} else if asker == nil {
				asker = r
			}
		}
		for range 2 {
			resp, body, err := getWith(t, asker.url+path, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.True(t, bytes.Equal(content, body))
		}
		require.Equal(t, 2, parent.getsOf(path), "each request should reach the parent through the asking gate")
		require.NotEqual(t, owner, asker.gate.Peers.Owner(t.Context(), path[len("/v2/test/app/blobs/"):], time.Now()),
			"the owner that did not answer should be avoided")
	})

	t.Run("a gate should refuse a peer request without the release's secret, and the asking gate fetch from the parent", func(t *testing.T) {
		t.Parallel()
		content := bytes.Repeat([]byte("secret "), 50_000)
		parent := newCountingParent(t, nil, content)
		rs, _ := replicaSet(t, parent.Server, 2, "release-secret")
		path := blobPathOf(content)

		resp, _, err := getWith(t, rs[0].peer.URL+path, http.Header{PeerSecretHeader: {"guess"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, _, err = getWith(t, rs[0].peer.URL+"/v2/test/app/manifests/v1", http.Header{PeerSecretHeader: {"release-secret"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "the peer port should serve blobs only")
		require.Zero(t, parent.getsOf(path))

		for _, r := range rs {
			r.gate.Peers.Secret = "rotated-" + r.gate.Peers.Self // every gate with another secret
		}
		for _, r := range rs {
			resp, body, err := getWith(t, r.url+path, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.True(t, bytes.Equal(content, body))
		}
		require.Equal(t, 2, parent.getsOf(path))
	})

	t.Run("the members should be the headless Service's addresses, each with the peer port", func(t *testing.T) {
		t.Parallel()
		got, err := ResolveMembers("127.0.0.1", "5129")(t.Context())
		require.NoError(t, err)
		require.Equal(t, []string{net.JoinHostPort("127.0.0.1", "5129")}, got)
	})

	t.Run("a comma-separated list should join every name's addresses", func(t *testing.T) {
		t.Parallel()
		got, err := ResolveMembers("127.0.0.2,127.0.0.3, 127.0.0.4", "5129")(t.Context())
		require.NoError(t, err)
		require.Equal(t, []string{"127.0.0.2:5129", "127.0.0.3:5129", "127.0.0.4:5129"}, got)
	})
}
