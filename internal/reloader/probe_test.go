package reloader

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/certs"
)

// probeRegistry serves HTTPS as the registry does, with a certificate and an answer to GET / the test switches.
type probeRegistry struct {
	srv    *http.Server
	ln     net.Listener
	mu     sync.Mutex
	cert   tls.Certificate
	status int
}

func newProbeRegistry(t *testing.T, pair *certs.Pair) *probeRegistry {
	t.Helper()
	r := &probeRegistry{status: http.StatusOK}
	r.serve(t, pair)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		c := r.cert
		return &c, nil
	}})
	require.NoError(t, err)
	r.ln = ln
	r.srv = &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		w.WriteHeader(r.status)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

func (r *probeRegistry) serve(t *testing.T, pair *certs.Pair) {
	t.Helper()
	c, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	require.NoError(t, err)
	r.mu.Lock()
	r.cert = c
	r.mu.Unlock()
}

func (r *probeRegistry) answer(status int) { r.mu.Lock(); r.status = status; r.mu.Unlock() }

func (r *probeRegistry) addr() string { return r.ln.Addr().String() }

// containerProc is a /proc whose first process started at tick start.
func containerProc(t *testing.T, dir, start string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "1"), 0o755))
	fields := "S 0 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 4 0 " + start + " 100000 100 1000"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "1", "stat"), []byte("1 (registry serve) "+fields+"\n"), 0o644))
}

func TestProbe(t *testing.T) {
	t.Parallel()
	ca := issueCA(t, "connected-registry CA")
	served, renewed := issueLeaf(t, ca), issueLeaf(t, ca)
	setup := func(t *testing.T) (*Probe, *probeRegistry, *stepClock) {
		t.Helper()
		reg := newProbeRegistry(t, served)
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), served.CertPEM, 0o644))
		proc := t.TempDir()
		containerProc(t, proc, "4242")
		clk := &stepClock{t: testEpoch}
		return &Probe{TLSDir: dir, Addr: reg.addr(), State: filepath.Join(t.TempDir(), "state"), HangAfter: 2 * time.Minute,
			Timeout: time.Second, Proc: proc, Clock: clk}, reg, clk
	}

	t.Run("a registry serving its files should pass", func(t *testing.T) {
		t.Parallel()
		p, _, _ := setup(t)
		msg, err := p.Check(context.Background())
		require.NoError(t, err)
		require.Equal(t, "the registry answers with its certificate (serial "+served.Cert.SerialNumber.String()+")", msg)
	})

	t.Run("a registry serving an older certificate than its files should fail at once", func(t *testing.T) {
		t.Parallel()
		p, reg, _ := setup(t)
		require.NoError(t, os.WriteFile(filepath.Join(p.TLSDir, "tls.crt"), renewed.CertPEM, 0o644))
		_, err := p.Check(context.Background())
		require.ErrorIs(t, err, ErrStale)
		require.EqualError(t, err, "the registry serves an older certificate than its files hold: it serves serial "+served.Cert.SerialNumber.String()+
			", and "+filepath.Join(p.TLSDir, "tls.crt")+" holds serial "+renewed.Cert.SerialNumber.String()+": restart it")
		reg.serve(t, renewed)
		_, err = p.Check(context.Background())
		require.NoError(t, err, "restarted with the new files")
	})

	t.Run("a registry that stops answering should fail only after the hang time", func(t *testing.T) {
		t.Parallel()
		p, reg, clk := setup(t)
		_, err := p.Check(context.Background())
		require.NoError(t, err)
		reg.answer(http.StatusServiceUnavailable)
		clk.Advance(time.Minute)
		msg, err := p.Check(context.Background())
		require.NoError(t, err)
		require.Equal(t, "the registry does not answer (GET / answered 503 Service Unavailable), for 1m0s so far", msg)
		clk.Advance(time.Minute)
		_, err = p.Check(context.Background())
		require.ErrorIs(t, err, ErrHung)
		require.EqualError(t, err, "the registry does not answer for 2m0s (GET / answered 503 Service Unavailable)")

		// The kubelet restarts the container: its first process starts anew, and the wait with it.
		containerProc(t, p.Proc, "9999")
		clk.Advance(time.Hour)
		msg, err = p.Check(context.Background())
		require.NoError(t, err)
		require.Contains(t, msg, "for 0s so far")
	})

	t.Run("a registry that never answered in this container should get the hang time from the first look", func(t *testing.T) {
		t.Parallel()
		p, reg, clk := setup(t)
		reg.srv.Close()
		_, err := p.Check(context.Background())
		require.NoError(t, err)
		clk.Advance(2*time.Minute - time.Second)
		_, err = p.Check(context.Background())
		require.NoError(t, err)
		clk.Advance(time.Second)
		_, err = p.Check(context.Background())
		require.ErrorIs(t, err, ErrHung)
	})
}
