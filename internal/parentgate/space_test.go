package parentgate

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// freeBytes is a Space with a set number of free bytes.
type freeBytes struct {
	mu   sync.Mutex
	free int64
}

func (f *freeBytes) set(n int64) { f.mu.Lock(); f.free = n; f.mu.Unlock() }

func (f *freeBytes) Fits(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if size > f.free {
		return fmt.Errorf("%w: %d bytes free, a blob of %d", ErrCacheFull, f.free, size)
	}
	return nil
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncLog) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func head(t *testing.T, u string) *http.Response {
	t.Helper()
	resp, err := http.Head(u)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// TestFullCacheRefusesBlobsThatDoNotFit: a HEAD of a blob larger than the free space is answered 507 with the hint,
// logged once per full episode; a blob that fits, a GET, and a manifest go through.
func TestFullCacheRefusesBlobsThatDoNotFit(t *testing.T) {
	t.Parallel()
	content, path := blob(4096)
	parent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(content)
		}
	}))
	t.Cleanup(parent.Close)
	g, base := forwardingGate(t, parent)
	space := &freeBytes{free: 1000}
	var log syncLog
	g.Space, g.FullHint, g.Log = space, "set registry.cache.maxSize", slog.New(slog.NewTextHandler(&log, nil))

	for range 2 {
		resp := head(t, base+path)
		require.Equal(t, http.StatusInsufficientStorage, resp.StatusCode)
	}
	require.Equal(t, 1, strings.Count(log.String(), "the registry's cache volume is full"), "logged once:\n%s", log.String())
	require.Contains(t, log.String(), "set registry.cache.maxSize")
	require.Equal(t, http.StatusOK, head(t, base+"/v2/test/app/manifests/latest").StatusCode, "manifests are not checked")

	space.set(1 << 20)
	require.Equal(t, http.StatusOK, head(t, base+path).StatusCode)
	resp, body, err := getWith(t, base+path, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, content, body)

	space.set(10)
	require.Equal(t, http.StatusInsufficientStorage, head(t, base+path).StatusCode)
	require.Equal(t, 2, strings.Count(log.String(), "the registry's cache volume is full"), "a new full episode is logged again:\n%s", log.String())
}

func TestVolumeSpaceOfARealDirectory(t *testing.T) {
	t.Parallel()
	v := VolumeSpace{Dir: t.TempDir(), Reserve: 1 << 20}
	require.NoError(t, v.Fits(1))
	require.ErrorIs(t, v.Fits(1<<62), ErrCacheFull)
}
