package clientauth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxBuckets bounds the limiter's memory: beyond it, buckets idle longer than their refill time are dropped,
// and if that is not enough the limiter refuses new keys (fails closed) until some refill.
const maxBuckets = 10000

// limiter is a token bucket per key (a client IP, a token name) that only failed attempts spend.
type limiter struct {
	mu      sync.Mutex
	every   time.Duration // one attempt comes back every this long
	burst   int
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiter(every time.Duration, burst int) *limiter {
	return &limiter{every: every, burst: burst, buckets: map[string]*bucket{}}
}

// allowed reports whether key may try now, and if not, how long until it may.
func (l *limiter) allowed(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets && !l.prune(now) {
			return false, l.every
		}
		return true, 0
	}
	if b.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	r := b.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d
}

// fail spends one attempt of key.
func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	b.lim.AllowN(now, 1)
}

// prune drops buckets that have refilled; it reports whether there is room.
func (l *limiter) prune(now time.Time) bool {
	full := time.Duration(l.burst) * l.every
	for k, b := range l.buckets {
		if now.Sub(b.last) > full {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < maxBuckets
}
