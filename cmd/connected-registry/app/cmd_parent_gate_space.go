package app

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/connected-registry/connected-registry/internal/parentgate"
)

// gateSpace are the parent gate's flags for a full cache volume.
type gateSpace struct {
	// CacheDir is the registry's cache volume, mounted read-only; empty: no check.
	CacheDir string
	// CacheReserve is kept free besides a blob, a quantity.
	CacheReserve string
	// CacheMaxSize is registry.cache.maxSize, to name the value that fixes a full volume.
	CacheMaxSize string
	// VolumeSize is pvc.storageRequest, likewise.
	VolumeSize string

	reserve int64
}

func (s *gateSpace) addSpaceFlags(fs *FlagSet) {
	const p = "CONNECTED_REGISTRY_GATE_"
	fs.StringVar(&s.CacheDir, "cache-dir", p+"CACHE_DIR", "",
		"the registry's cache volume, mounted read-only: a blob the registry lacks that would not fit is refused (507) before its bytes move, and logged once; its use and size are metrics; empty: neither")
	fs.StringVar(&s.CacheReserve, "cache-reserve", p+"CACHE_RESERVE", "64Mi", "bytes of --cache-dir kept free besides a blob, as a quantity")
	fs.StringVar(&s.CacheMaxSize, "cache-max-size", p+"CACHE_MAX_SIZE", "", "registry.cache.maxSize, named in the message of a full volume")
	fs.StringVar(&s.VolumeSize, "volume-size", p+"VOLUME_SIZE", "", "pvc.storageRequest, named in the message of a full volume")
}

func (s *gateSpace) completeSpace() error {
	if s.CacheDir == "" {
		return nil
	}
	q, err := resource.ParseQuantity(s.CacheReserve)
	if err != nil || q.Sign() < 0 {
		return usageErrorf("--cache-reserve %q is not a size such as 64Mi", s.CacheReserve)
	}
	s.reserve = q.Value()
	return nil
}

// fullHint is the value that fixes a full cache volume.
func (s *gateSpace) fullHint() string {
	size := "pvc.storageRequest"
	if s.VolumeSize != "" {
		size = fmt.Sprintf("pvc.storageRequest (%s)", s.VolumeSize)
	}
	if s.CacheMaxSize != "" {
		return fmt.Sprintf("lower registry.cache.maxSize (%s), or raise %s, so that the eviction leaves room for what the site pulls between its runs", s.CacheMaxSize, size)
	}
	return fmt.Sprintf("set registry.cache.maxSize below %s, so that a scheduled eviction removes the images pulled least recently, or raise %s", size, size)
}

// space is what the gate checks blobs against, nil without --cache-dir.
func (s *gateSpace) space() parentgate.Space {
	if s.CacheDir == "" {
		return nil
	}
	return parentgate.VolumeSpace{Dir: s.CacheDir, Reserve: s.reserve}
}
