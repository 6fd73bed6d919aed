package parentgate

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"syscall"
)

// ErrCacheFull: the registry's cache volume cannot hold a blob the registry is about to fetch.
var ErrCacheFull = errors.New("the cache volume is full")

// Space tells whether the registry's cache can store a blob of a given size.
type Space interface {
	// Fits returns nil when size bytes fit, else an error wrapping ErrCacheFull that says how much is free.
	Fits(size int64) error
}

// VolumeSpace is the free space of the file system the registry stores its cache on, mounted (read-only) in the
// gate at Dir.
type VolumeSpace struct {
	// Dir is the cache volume's mount point.
	Dir string
	// Reserve is left free besides the blob: the file system's own needs, the registry's upload bookkeeping. A
	// volume smaller than 32 times it keeps a 32nd of itself free instead.
	Reserve int64
}

// Fits checks the volume's available bytes against size plus the reserve.
func (v VolumeSpace) Fits(size int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(v.Dir, &st); err != nil {
		// The check is a courtesy: a volume it cannot read fails as it would without it.
		return nil
	}
	free := int64(st.Bavail) * int64(st.Bsize)  //nolint:gosec // block counts of a real file system fit
	total := int64(st.Blocks) * int64(st.Bsize) //nolint:gosec // as above
	// A small volume keeps a 32nd of itself free at most.
	reserve := min(v.Reserve, total/32)
	if free-reserve < size {
		return fmt.Errorf("%w: %d bytes free of %d, a blob of %d bytes does not fit with %d kept free", ErrCacheFull,
			free, total, size, reserve)
	}
	return nil
}

// fullReport logs the first refusal of a full cache, and again only after a blob fitted in between.
type fullReport struct {
	mu       sync.Mutex
	reported bool
	refused  int64
}

// refuseFull answers the registry's HEAD of a blob that cannot be stored with 507 Insufficient Storage, before
// the registry asks for the blob: Distribution then answers its client's request at once with an error, instead
// of streaming the parent's bytes to the client while its write fails, which cuts the client's copy short (every
// retry again) and costs the uplink each time. What is cached is served as before.
func (g *Gate) refuseFull(w http.ResponseWriter, path string, err error) {
	g.full.mu.Lock()
	g.full.refused++
	first := !g.full.reported
	g.full.reported = true
	g.full.mu.Unlock()
	if first {
		g.logger().Error("the registry's cache volume is full: blobs it lacks are refused, cached ones are still served; "+g.FullHint,
			"path", path, "err", err)
	}
	http.Error(w, err.Error()+"; "+g.FullHint, http.StatusInsufficientStorage)
}

// fitted records that a blob fitted: the next full volume is reported again.
func (g *Gate) fitted() {
	g.full.mu.Lock()
	g.full.reported = false
	g.full.mu.Unlock()
}

// checkSpace is true when a HEAD of a blob the parent answered may go on: no Space is set, the size is unknown,
// or it fits. Otherwise it has answered the registry.
func (g *Gate) checkSpace(w http.ResponseWriter, r *http.Request, resp *http.Response) bool {
	if g.Space == nil || r.Method != http.MethodHead || resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 ||
		!blobPath.MatchString(r.URL.Path) {
		return true
	}
	if err := g.Space.Fits(resp.ContentLength); err != nil {
		g.refuseFull(w, r.URL.Path, err)
		return false
	}
	g.fitted()
	return true
}
