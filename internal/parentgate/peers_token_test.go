package parentgate

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

// tokenReplica is one replica's gate in front of a token parent, with its peer port and its registry's client.
type tokenReplica struct {
	gate   *Gate
	client registryClient
	log    *syncbuf.Buffer
}

// tokenReplicaSet starts n gates in front of p (token auth, blobs redirected to a storage host) that route each
// blob to its owner among them.
func tokenReplicaSet(t *testing.T, p *tokenParent, n int) []*tokenReplica {
	t.Helper()
	members := &memberList{}
	var rs []*tokenReplica
	for range n {
		g, c, log := tokenGate(t, p)
		g.DialTimeout = 5 * time.Second
		peer := httptest.NewServer(g.PeerHandler())
		t.Cleanup(peer.Close)
		members.add(peer.Listener.Addr().String())
		g.Peers = &Peers{Self: peer.Listener.Addr().String(), Secret: "release-secret", Lookup: members.lookup, Refresh: time.Hour}
		rs = append(rs, &tokenReplica{gate: g, client: c, log: log})
	}
	return rs
}

// notOwner returns a replica that does not own p's blob, so that its gate asks the owner.
func notOwner(t *testing.T, rs []*tokenReplica, p *tokenParent) *tokenReplica {
	t.Helper()
	owner := rs[0].gate.Peers.Owner(t.Context(), strings.TrimPrefix(p.path, "/v2/test/app/blobs/"), time.Now())
	if rs[0].gate.Peers.Self == owner {
		return rs[1]
	}
	return rs[0]
}

func TestOwnerRoutingWithTokens(t *testing.T) {
	t.Parallel()

	t.Run("a blob another replica owns should come through the owner with the asking registry's token, from the storage host the parent redirects to", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		rs := tokenReplicaSet(t, p, 2)
		asker := notOwner(t, rs, p)
		status, body := asker.client.get(p.path)
		require.Equal(t, http.StatusOK, status, string(body))
		require.Equal(t, p.content, body)
		require.EqualValues(t, 1, p.storageGets.Load())
		require.Equal(t, []string{""}, p.storageAuth, "the storage host must never get the registry's Authorization")
		storage, err := url.Parse(p.storage.URL)
		require.NoError(t, err)
		_, reached := asker.gate.roleOf(storage.Host)
		require.False(t, reached, "the asking gate should not have fetched the blob itself; its log:\n%s", asker.log)
	})

	t.Run("a token the parent stops taking should be renewed by the gate that handed it out, and the owner asked again, unseen by the registry", func(t *testing.T) {
		t.Parallel()
		p := newTokenParent(t)
		rs := tokenReplicaSet(t, p, 2)
		asker := notOwner(t, rs, p)
		status, body := asker.client.get(p.path)
		require.Equal(t, http.StatusOK, status, string(body))

		// The parent restarted with new keys: every token it gave is refused. The asking gate still hands out
		// the one it holds, and the owner's gate cannot renew a token it never handed out.
		p.revoked.Store(true)
		status, body = asker.client.get(p.path)
		require.Equal(t, http.StatusOK, status, "the registry should get the blob, not the parent's refusal: %s\nasking gate's log:\n%s", body, asker.log)
		require.Equal(t, p.content, body)
		require.Len(t, p.calls(), 2, "one token, renewed once")
		for _, r := range rs {
			require.NotContains(t, r.log.String(), "the parent refused the token",
				"a token renewed unseen is no refusal to report, least of all by the owner, which never handed it out")
		}
		require.EqualValues(t, 2, p.storageGets.Load())
		for _, a := range p.storageAuth {
			require.Empty(t, a, "the storage host must never get the registry's Authorization")
		}
	})
}
