package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Link relays TCP connections to a target, sending the target's bytes on at a limited rate shared by all its
// connections: the thin uplink of a remote site in front of its parent registry. Bytes towards the target pass
// at once; TLS passes through untouched.
type Link struct {
	// Addr is the link's host:port.
	Addr string

	l       net.Listener
	limiter *rate.Limiter
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	sent    atomic.Int64
}

// linkChunk is the most the link sends at once.
const linkChunk = 16 << 10

// StartLink listens on listen (host:port, port 0 for a free one) and relays to target at bytesPerSecond.
func StartLink(listen, target string, bytesPerSecond int) (*Link, error) {
	if bytesPerSecond < linkChunk {
		return nil, fmt.Errorf("link rate %d B/s is below one chunk (%d B) per second", bytesPerSecond, linkChunk)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("link to %s: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// A burst of 20 ms of the rate: a wait that oversleeps is made up by the next ones, so the rate holds on
	// average.
	burst := max(linkChunk, bytesPerSecond/50)
	k := &Link{Addr: l.Addr().String(), l: l, limiter: rate.NewLimiter(rate.Limit(bytesPerSecond), burst),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	k.wg.Go(func() { k.accept(target) })
	return k, nil
}

// Close stops the link and cuts its connections.
func (k *Link) Close() {
	k.cancel()
	k.l.Close()
	k.mu.Lock()
	for c := range k.conns {
		c.Close()
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// Sent is how many bytes the link has sent from its target to its clients: what crossed the uplink towards the
// site.
func (k *Link) Sent() int64 { return k.sent.Load() }

func (k *Link) track(c net.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx.Err() != nil {
		c.Close()
		return false
	}
	k.conns[c] = struct{}{}
	return true
}

func (k *Link) accept(target string) {
	for {
		down, err := k.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			down.Close()
			continue
		}
		if !k.track(down) || !k.track(up) {
			down.Close()
			up.Close()
			return
		}
		k.wg.Go(func() {
			defer up.Close()
			_, _ = io.Copy(up, down)
		})
		k.wg.Go(func() {
			defer down.Close()
			k.send(down, up)
		})
	}
}

// send copies from up to down, a chunk at a time as the rate allows.
func (k *Link) send(down, up net.Conn) {
	buf := make([]byte, linkChunk)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if k.limiter.WaitN(k.ctx, n) != nil {
				return
			}
			w, werr := down.Write(buf[:n])
			k.sent.Add(int64(w))
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
