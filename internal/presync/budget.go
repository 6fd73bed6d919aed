package presync

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// readChunk is the most a fetch reads at once; the rate limiter's burst is never smaller.
	readChunk = 32 << 10
	// admitSlack and admitMargin widen the estimate of when the fetches in flight and a new one will end: a blob
	// is started only if it should end, with room to spare, before the window does.
	admitSlack  = 1.25
	admitMargin = 250 * time.Millisecond
	// minMeasure is how long fetches must have run before their rate is trusted for estimates.
	minMeasure = time.Second
)

// budget shares a run's bandwidth and window among its fetches: a token bucket on the bytes read, shared by every
// fetch, and, with a window, the decision to start a blob only when it can end before the window does.
type budget struct {
	limiter *rate.Limiter // nil: no cap
	cap     float64       // bytes per second, 0: no cap
	stopAt  time.Time     // zero: no window
	now     func() time.Time

	mu        sync.Mutex
	inflight  int64 // bytes still to come of the fetches in flight
	read      int64 // bytes read by every fetch of the run
	active    int   // fetches in flight
	busy      time.Duration
	busySince time.Time
}

func newBudget(bandwidth int64, stopAt time.Time, now func() time.Time) *budget {
	b := &budget{stopAt: stopAt, now: now}
	if bandwidth > 0 {
		b.cap = float64(bandwidth)
		b.limiter = rate.NewLimiter(rate.Limit(bandwidth), max(readChunk, int(bandwidth/20)))
	}
	return b
}

// rate is the bytes per second a new fetch can expect: the cap, or what the run's fetches achieved when that is
// lower and measured long enough; 0 when unknown.
func (b *budget) rateLocked(now time.Time) float64 {
	busy := b.busy
	if b.active > 0 {
		busy += now.Sub(b.busySince)
	}
	r := b.cap
	if busy >= minMeasure && b.read > 0 {
		measured := float64(b.read) / busy.Seconds()
		if r == 0 || measured < r {
			r = measured
		}
	}
	return r
}

// admit decides whether a fetch of size bytes starts: always without a window; with one, only if it and the
// fetches in flight should end before the window does at the rate expected. An admitted fetch must call done.
func (b *budget) admit(size int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.stopAt.IsZero() {
		left := b.stopAt.Sub(now)
		if left <= 0 {
			return false
		}
		if r := b.rateLocked(now); r > 0 {
			need := time.Duration(float64(b.inflight+size)/r*admitSlack*float64(time.Second)) + admitMargin
			if need > left {
				return false
			}
		}
	}
	b.inflight += size
	if b.active == 0 {
		b.busySince = now
	}
	b.active++
	return true
}

// done ends an admitted fetch of size bytes of which got were read.
func (b *budget) done(size, got int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if left := size - got; left > 0 {
		b.inflight -= left
	}
	b.active--
	if b.active == 0 {
		b.busy += b.now().Sub(b.busySince)
	}
}

func (b *budget) progress(n int64) {
	b.mu.Lock()
	b.inflight -= n
	b.read += n
	b.mu.Unlock()
}

// reader reads body through the rate limit, counting what it reads for the estimates.
func (b *budget) reader(ctx context.Context, body io.Reader, got *int64) io.Reader {
	return &budgetReader{ctx: ctx, b: b, r: body, got: got}
}

type budgetReader struct {
	ctx context.Context
	b   *budget
	r   io.Reader
	got *int64
}

func (br *budgetReader) Read(p []byte) (int, error) {
	if len(p) > readChunk {
		p = p[:readChunk]
	}
	n, err := br.r.Read(p)
	if n > 0 {
		br.b.progress(int64(n))
		*br.got += int64(n)
		if br.b.limiter != nil {
			if werr := br.b.limiter.WaitN(br.ctx, n); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return n, err
}
