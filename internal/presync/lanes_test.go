package presync

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// blobServer answers blob GETs of a registry; a GET of a large blob blocks until release is closed.
type blobServer struct {
	blobs   map[digest.Digest][]byte
	release chan struct{}
	mu      sync.Mutex
	large   int // large blob GETs in flight
	served  []digest.Digest
}

func (s *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := strings.LastIndex(r.URL.Path, "/blobs/")
	if r.Method != http.MethodGet || i < 0 {
		http.NotFound(w, r)
		return
	}
	d := digest.Digest(r.URL.Path[i+len("/blobs/"):])
	b, ok := s.blobs[d]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if len(b) > smallBlob {
		s.mu.Lock()
		s.large++
		s.mu.Unlock()
		<-s.release
	}
	s.mu.Lock()
	s.served = append(s.served, d)
	s.mu.Unlock()
	w.Write(b)
}

func randomBlob(t *testing.T, n int) ([]byte, descriptor) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(b)
	return b, descriptor{Digest: d.String(), Size: int64(n)}
}

// TestSmallBlobsPassLargeOnes proves the run's two lanes: with every large-blob slot taken by a fetch that does
// not end, a small blob is still fetched; one more large blob waits for a slot.
func TestSmallBlobsPassLargeOnes(t *testing.T) {
	const concurrency = 2
	srv := &blobServer{blobs: map[digest.Digest][]byte{}, release: make(chan struct{})}
	var large []descriptor
	for range concurrency + 1 {
		b, d := randomBlob(t, smallBlob+1)
		srv.blobs[digest.Digest(d.Digest)] = b
		large = append(large, d)
	}
	sb, small := randomBlob(t, 4096)
	srv.blobs[digest.Digest(small.Digest)] = sb
	ts := httptest.NewServer(srv)
	defer ts.Close()
	release := sync.OnceFunc(func() { close(srv.release) })
	defer release() // before ts.Close, which waits for the handlers
	base, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Concurrency: concurrency, Log: slog.New(slog.DiscardHandler)}
	rn := &run{Runner: r, now: time.Now, large: make(chan struct{}, concurrency), small: make(chan struct{}, concurrency),
		reg: &registry{base: base, http: ts.Client()}, budget: newBudget(0, time.Time{}, time.Now), status: &Status{}}
	rs := &RepositoryStatus{Name: "app"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, len(large))
	for _, d := range large {
		wg.Go(func() {
			if _, err := rn.fetch(ctx, "app", d, rs); err != nil {
				errs <- fmt.Errorf("large blob %s: %w", d.Digest, err)
			}
		})
	}
	// Wait until the large lane is full: concurrency GETs at the server, one fetch waiting for a slot.
	for {
		srv.mu.Lock()
		n := srv.large
		srv.mu.Unlock()
		if n == concurrency {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the large fetches never reached the registry: %d of %d", n, concurrency)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Without its own lane the small fetch would wait for ever behind the blocked large ones: bound the wait.
	smallCtx, smallCancel := context.WithTimeout(ctx, 15*time.Second)
	fetched, err := rn.fetch(smallCtx, "app", small, rs)
	smallCancel()
	if err != nil || !fetched {
		t.Fatalf("the small blob behind %d large fetches in flight: fetched %v, err %v", concurrency, fetched, err)
	}
	srv.mu.Lock()
	if srv.large != concurrency {
		t.Errorf("large blob GETs in flight = %d, want %d: the large lane must hold its limit", srv.large, concurrency)
	}
	srv.mu.Unlock()

	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := rn.status.Run.BlobsFetched, len(large)+1; got != want {
		t.Errorf("blobs fetched = %d, want %d", got, want)
	}
}
