package parentgate

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// ErrDigestMismatch ends a blob whose bytes do not hash to the digest the request named.
var ErrDigestMismatch = errors.New("the blob's bytes do not match its digest")

// verifier passes a blob's bytes through, hashing them, and holds the last byte back until the end: then it
// gives it only when the bytes hash to the digest, and ErrDigestMismatch otherwise. A reader of it never sees
// a complete blob that is not the one it asked for.
type verifier struct {
	r      io.Reader
	h      hash.Hash
	want   string // hex
	digest string
	held   byte
	has    bool
	eof    bool  // the source ended and the digest matched
	err    error // the source failed, or the digest did not match
}

// newVerifier verifies r against digest (algorithm:hex); false for an algorithm it does not know.
func newVerifier(r io.Reader, digest string) (*verifier, bool) {
	alg, hexPart, ok := strings.Cut(digest, ":")
	if !ok {
		return nil, false
	}
	var h hash.Hash
	switch alg {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return nil, false
	}
	return &verifier{r: r, h: h, want: strings.ToLower(hexPart), digest: digest}, true
}

// Read needs room for two bytes: the one held back and at least one new.
func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.eof {
		if v.has {
			p[0], v.has = v.held, false
			return 1, nil
		}
		return 0, io.EOF
	}
	if len(p) < 2 {
		return 0, io.ErrShortBuffer
	}
	off := 0
	if v.has {
		p[0], off = v.held, 1
	}
	n, err := v.r.Read(p[off:])
	v.h.Write(p[off : off+n])
	total := off + n
	v.has = total > 0
	if v.has {
		total--
		v.held = p[total]
	}
	switch {
	case errors.Is(err, io.EOF):
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.has = false
			v.err = fmt.Errorf("%w: %s", ErrDigestMismatch, v.digest)
			return total, v.err
		}
		v.eof = true
		return total, nil
	case err != nil:
		v.has = false
		v.err = err
		return total, err
	}
	return total, nil
}

// idleReader cuts a body that sends nothing for its timeout: cancel ends the request, and the read's error then
// says why. Only time spent waiting in Read counts, not the time its caller takes to pass the bytes on.
type idleReader struct {
	r       io.Reader
	timeout time.Duration
	what    string
	timer   *time.Timer
	fired   atomic.Bool
}

func newIdleReader(r io.Reader, timeout time.Duration, what string, cancel func()) *idleReader {
	i := &idleReader{r: r, timeout: timeout, what: what}
	i.timer = time.AfterFunc(time.Hour, func() {
		i.fired.Store(true)
		cancel()
	})
	i.timer.Stop()
	return i
}

func (i *idleReader) Read(p []byte) (int, error) {
	i.timer.Reset(i.timeout)
	n, err := i.r.Read(p)
	i.timer.Stop()
	if err != nil && !errors.Is(err, io.EOF) && i.fired.Load() {
		err = fmt.Errorf("the %s sent no bytes of the body for %s: %w", i.what, i.timeout, err)
	}
	return n, err
}

func (i *idleReader) stop() { i.timer.Stop() }

// spoolPattern names spool files; Sweep removes files of this name.
const spoolPattern = "blob-*"

// Sweep removes spool files a previous gate left behind (it stopped while blobs streamed). Run it before
// serving.
func (g *Gate) Sweep() error {
	dir := g.SpoolDir
	if dir == "" {
		dir = os.TempDir()
	}
	names, err := filepath.Glob(filepath.Join(dir, spoolPattern))
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
