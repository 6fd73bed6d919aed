package reloader

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/connected-registry/connected-registry/internal/clock"
)

// Defaults of Probe.
const (
	// DefaultHangAfter is how long the registry may leave the probe unanswered before it fails.
	DefaultHangAfter = 2 * time.Minute
	// DefaultProbeTimeout bounds one look at the registry.
	DefaultProbeTimeout = 4 * time.Second
)

// ErrStale is returned by Probe.Check when the registry serves another certificate than its files hold.
var ErrStale = errors.New("the registry serves an older certificate than its files hold")

// ErrHung is returned by Probe.Check when the registry has not answered for HangAfter.
var ErrHung = errors.New("the registry does not answer")

// Probe is the registry container's liveness probe (the registry-probe command, which the kubelet runs in the
// registry container): it fails at once when the registry serves another certificate than the files the
// reloader wrote, so the kubelet starts it again with them, and when the registry has not answered for
// HangAfter. It keeps when it last saw the registry answer in State, with the start of the container's first
// process, so a restarted container starts afresh.
type Probe struct {
	// TLSDir holds the tls.crt the reloader wrote.
	TLSDir string
	// Addr is where the registry serves TLS in the pod.
	Addr string
	// State is a file of the probe's own, in a writable volume of the registry container.
	State string
	// HangAfter is how long the registry may leave the probe unanswered; 0 is DefaultHangAfter.
	HangAfter time.Duration
	// Timeout bounds one look at the registry; 0 is DefaultProbeTimeout.
	Timeout time.Duration
	// Proc is the proc filesystem, to tell one start of the container from the next; empty is /proc.
	Proc string
	// Clock defaults to the real time.
	Clock clock.Clock
}

// Check looks at the registry once. It returns nil while the registry serves what its files hold, or has not
// answered for less than HangAfter; what it saw, in one line; and ErrStale or ErrHung otherwise.
func (p *Probe) Check(ctx context.Context) (string, error) {
	now := clock.Or(p.Clock).Now()
	file, err := os.ReadFile(filepath.Join(p.TLSDir, corev1.TLSCertKey))
	if err != nil {
		return "", fmt.Errorf("reading the registry's certificate: %w", err)
	}
	want, err := parseLeaf(file)
	if err != nil {
		return "", fmt.Errorf("the registry's certificate file: %w", err)
	}
	served, err := p.look(ctx)
	if err != nil {
		return p.unanswered(now, err)
	}
	if err := p.saveState(now); err != nil {
		return "", err
	}
	if !bytes.Equal(served.Raw, want.Raw) {
		return "", fmt.Errorf("%w: it serves serial %s, and %s holds serial %s: restart it", ErrStale, served.SerialNumber,
			filepath.Join(p.TLSDir, corev1.TLSCertKey), want.SerialNumber)
	}
	return fmt.Sprintf("the registry answers with its certificate (serial %s)", want.SerialNumber), nil
}

// look asks the registry for / over TLS and returns the certificate it served.
func (p *Probe) look(ctx context.Context) (*x509.Certificate, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} //nolint:gosec // reads the served certificate only
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+p.Addr+"/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET / answered %s", resp.Status)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return nil, errors.New("no certificate served")
	}
	return resp.TLS.PeerCertificates[0], nil
}

// unanswered decides about a look that failed: a failure of the liveness probe only once the registry has not
// answered for HangAfter since it last did, or since this container started.
func (p *Probe) unanswered(now time.Time, cause error) (string, error) {
	hang := p.HangAfter
	if hang <= 0 {
		hang = DefaultHangAfter
	}
	start := p.containerStart()
	last, ok := p.lastAnswer(start)
	if !ok {
		// The first look of this container: the wait starts now.
		if err := p.writeState(start, now); err != nil {
			return "", err
		}
		last = now
	}
	if silent := now.Sub(last); silent >= hang {
		return "", fmt.Errorf("%w for %s (%v)", ErrHung, silent.Round(time.Second), cause)
	}
	return fmt.Sprintf("the registry does not answer (%v), for %s so far", cause, now.Sub(last).Round(time.Second)), nil
}

// containerStart identifies this start of the container: the start time of its first process.
func (p *Probe) containerStart() string {
	proc := p.Proc
	if proc == "" {
		proc = "/proc"
	}
	stat, err := os.ReadFile(filepath.Join(proc, "1", "stat"))
	if err != nil {
		return ""
	}
	// The command name, in parentheses, may hold spaces: the fields that follow it are plain.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(string(stat[i+1:]))
	// starttime is field 22 of stat; fields here start at field 3.
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// lastAnswer reads when the registry last answered in this container's start.
func (p *Probe) lastAnswer(start string) (time.Time, bool) {
	b, err := os.ReadFile(p.State)
	if err != nil {
		return time.Time{}, false
	}
	got, at, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || got != start {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func (p *Probe) saveState(now time.Time) error { return p.writeState(p.containerStart(), now) }

// writeState records when the registry last answered. Not atomic, and not synced: a torn or lost state only
// restarts the wait.
func (p *Probe) writeState(start string, at time.Time) error {
	if err := os.WriteFile(p.State, fmt.Appendf(nil, "%s %d\n", start, at.Unix()), 0o600); err != nil {
		return fmt.Errorf("the probe's state: %w", err)
	}
	return nil
}
