package parentgate

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

func TestOwnerGoneMidBlob(t *testing.T) {
	t.Parallel()

	t.Run("a blob whose owner goes away mid-stream should reach the registry whole, the rest fetched without that owner", func(t *testing.T) {
		t.Parallel()
		hold := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(hold) }) }
		content := bytes.Repeat([]byte("owner killed mid-blob "), 200_000)
		parent := newCountingParent(t, hold, content)
		rs, _ := replicaSet(t, parent.Server, 3, "release-secret")
		t.Cleanup(release)
		logs := &syncbuf.Buffer{}
		for _, r := range rs {
			r.gate.Log = slog.New(slog.NewTextHandler(logs, nil))
		}
		path := blobPathOf(content)
		owner := rs[0].gate.Peers.Owner(t.Context(), strings.TrimPrefix(path, "/v2/test/app/blobs/"), time.Now())
		var asker, gone *replica
		for _, r := range rs {
			switch {
			case r.gate.Peers.Self == owner:
				gone = r
			case asker == nil:
				asker = r
			}
		}
		resp, err := http.Get(asker.url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		// The registry has a part of the blob, from the owner; then the owner's pod is gone.
		first := make([]byte, len(content)/8)
		_, err = io.ReadFull(resp.Body, first)
		require.NoError(t, err)
		gone.peer.CloseClientConnections()
		gone.peer.Close()
		release()
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err, "logs:\n%s", logs)
		body := append(first, rest...)
		require.True(t, bytes.Equal(content, body), "the registry should get every byte of the blob once, in order (got %d of %d bytes); logs:\n%s", len(body), len(content), logs)
		require.Contains(t, logs.String(), "getting the rest without it")
		require.Equal(t, 2, parent.getsOf(path), "the owner's fetch and one more without it")
	})
}

// spooledOf is how many bytes of path the gate's flights hold.
func (g *Gate) spooledOf(path string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int64
	for k, f := range g.flights {
		if strings.HasPrefix(k, path+"\x00") {
			f.mu.Lock()
			n += f.size
			f.mu.Unlock()
		}
	}
	return n
}

func TestOwnerGoneNextOwner(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	content := bytes.Repeat([]byte("next owner "), 100_000)
	parent := newCountingParent(t, hold, content)
	rs, _ := replicaSet(t, parent.Server, 3, "release-secret")
	t.Cleanup(release)
	path := blobPathOf(content)
	owner := rs[0].gate.Peers.Owner(t.Context(), strings.TrimPrefix(path, "/v2/test/app/blobs/"), time.Now())
	var rest []*replica
	for _, r := range rs {
		if r.gate.Peers.Self == owner {
			r.peer.Close() // the owner's pod is gone; the Service still lists it
		} else {
			rest = append(rest, r)
		}
	}
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, len(rest))
	for _, r := range rest {
		go func() {
			_, body, err := getWith(t, r.url+path, nil)
			done <- result{body, err}
		}()
	}
	// Both requests wait on one fetch of the next owner before the parent sends the second half.
	joined := func() int { return rest[0].gate.readersOf(path) + rest[1].gate.readersOf(path) }
	for deadline := time.Now().Add(time.Minute); joined() < len(rest); time.Sleep(5 * time.Millisecond) {
		require.False(t, time.Now().After(deadline), "%d of %d requests joined a fetch; parent GETs: %d", joined(), len(rest), parent.getsOf(path))
	}
	release()
	for range rest {
		res := <-done
		require.NoError(t, res.err)
		require.True(t, bytes.Equal(content, res.body))
	}
	require.Equal(t, 1, parent.getsOf(path), "the replicas that found the owner gone should agree on the next one and fetch once")
}
