package registry_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
	"github.com/connected-registry/connected-registry/internal/testing/podemu"
	"github.com/connected-registry/connected-registry/internal/testing/syncbuf"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if productBin != "" {
		os.RemoveAll(filepath.Dir(productBin))
	}
	os.Exit(code)
}

// registryBinary finds Distribution v3.1.2's registry binary, which ci/tools.sh builds.
func registryBinary(t *testing.T) string {
	t.Helper()
	return toolBinary(t, "registry", "REGISTRY_BIN", "the Distribution registry binary")
}

// toolBinary finds the binary ci/tools.sh builds as bin/name, or the one the environment variable env names.
func toolBinary(t *testing.T, name, env, what string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		bin = filepath.Join(chartrender.RepoRoot(), "bin", name)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s %s is missing: run ci/tools.sh %s (or set %s)", what, bin, name, env)
	}
	return bin
}

var (
	productOnce sync.Once
	productBin  string
	productErr  error
)

// productBinary builds ./cmd/connected-registry once per test process.
func productBinary(t *testing.T) string {
	t.Helper()
	productOnce.Do(func() {
		dir, err := os.MkdirTemp("", "connected-registry-bin-")
		if err != nil {
			productErr = err
			return
		}
		productBin = filepath.Join(dir, "connected-registry")
		goTool, err := exec.LookPath("go")
		if err != nil {
			productErr = fmt.Errorf("finding the go tool to build ./cmd/connected-registry: %w", err)
			return
		}
		cmd := exec.Command(goTool, "build", "-o", productBin, "./cmd/connected-registry")
		cmd.Dir = chartrender.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			productErr = fmt.Errorf("go build ./cmd/connected-registry: %w\n%s", err, out)
		}
	})
	if productErr != nil {
		t.Fatal(productErr)
	}
	return productBin
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := podemu.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// process is one running registry.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// startProcess starts bin with exactly env (nothing inherited) and stops it when the test ends, logging its
// output if the test failed.
func startProcess(t *testing.T, name, bin string, args, env []string) *process {
	t.Helper()
	p := &process{name: name, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", name, p.cmd.Process.Pid, tail(p.out.String(), 12000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to this process (by its pid), then SIGKILL after 10 s.
func (p *process) stop(t *testing.T) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Logf("%s did not stop within 10s of SIGTERM; killing pid %d", p.name, p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitReady polls url over TLS until it answers 200, failing early if the process exits.
func (p *process) waitReady(t *testing.T, client *http.Client, url string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited before it was ready (%v):\n%s", p.name, p.err, tail(p.out.String(), 12000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			cancel()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			cancel()
			last = err
			var certErr *tls.CertificateVerificationError
			if errors.As(err, &certErr) {
				t.Fatalf("%s serves a certificate the test CA does not verify: %v", p.name, err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s was not ready at %s within 20s: %v", p.name, url, last)
	return 0
}

// accessLog sums the requests and response bytes of Distribution's access log (combined log format) in a
// registry's output, from byte offset from on.
type accessLog struct {
	requests, blobRequests int
	bytes, blobBytes       int64
}

var accessLine = regexp.MustCompile(`"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-)`)

func (p *process) accessLog(from int) (accessLog, int) {
	out := p.out.String()
	var a accessLog
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
		}
	}
	return a, len(out)
}

func (a accessLog) String() string {
	return fmt.Sprintf("%d requests, %d bytes (of which %d blob requests, %d blob bytes)", a.requests, a.bytes, a.blobRequests, a.blobBytes)
}

// startACRParent starts the ACR-like test parent (bearer tokens that expire, blobs from a storage host) with the
// test CA and its default sync token, and stops it when the test ends.
func startACRParent(t *testing.T, registryBin string, ca *testCA) *acrparent.Parent {
	t.Helper()
	par, err := acrparent.Start(context.Background(), acrparent.Options{Bin: registryBin, Dir: t.TempDir(), CA: ca.CA})
	must(t, err)
	t.Cleanup(par.Stop)
	return par
}
