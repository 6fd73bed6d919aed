package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

// process is one child process of the benchmark, stopped by its own pid.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

func startProcess(name, bin string, args, env []string) (*process, error) {
	p := &process{name: name, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (SIGCONT first, in case it was frozen), then SIGKILL after 10 s.
func (p *process) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// waitReady polls url until it answers 200.
func (p *process) waitReady(ctx context.Context, client *http.Client, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.err, tail(p.out.String(), 4000))
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s was not ready at %s within 30s: %v", p.name, url, last)
}

// traffic sums the requests and response bytes of Distribution's access log (combined log format).
type traffic struct {
	requests, blobRequests int
	bytes, blobBytes       int64
	// blobGets counts the successful GETs of each blob digest: the parent began sending the whole blob each
	// time. Its access log's byte count can miss the last write of a response whose HTTP/2 stream the proxy
	// resets after reading the blob's length, so the benchmark counts whole blobs from these.
	blobGets map[string]int
}

// sent returns the bytes of the blobs the parent began to send, whole, by their sizes.
func (t traffic) sent(sizes map[string]int64) int64 {
	var n int64
	for d, c := range t.blobGets {
		n += int64(c) * sizes[d]
	}
	return n
}

var accessLine = regexp.MustCompile(`"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-)`)

// traffic returns what the access log in the output shows from byte offset from on, and the new offset.
func (p *process) traffic(from int) (traffic, int) {
	out := p.out.String()
	a := traffic{blobGets: map[string]int{}}
	for _, line := range strings.Split(out[from:], "\n") {
		m := accessLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[4], 10, 64)
		a.requests++
		a.bytes += n
		if strings.Contains(m[2], "/blobs/") {
			a.blobRequests++
			a.blobBytes += n
			if m[1] == http.MethodGet && m[3] == "200" {
				a.blobGets[m[2][strings.LastIndex(m[2], "/")+1:]]++
			}
		}
	}
	return a, len(out)
}

// settle waits until the process's output has not grown for quiet, at most max: the parent writes an access
// log line when a response ends, a moment after the proxy has read it.
func (p *process) settle(quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	n := p.out.Len()
	last := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if m := p.out.Len(); m != n {
			n, last = m, time.Now()
		} else if time.Since(last) >= quiet {
			return
		}
	}
}
