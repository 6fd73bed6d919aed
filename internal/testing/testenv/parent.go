package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ParentOptions describe a Distribution registry with htpasswd and TLS, standing in for the parent cloud
// registry.
type ParentOptions struct {
	// Bin is the Distribution v3 registry binary (bin/registry, built by ci/tools.sh).
	Bin string
	// Dir holds its configuration, certificate and storage.
	Dir string
	// Addr is host:port to listen on; the certificate's SANs hold its host.
	Addr string
	// CA signs the parent's certificate.
	CA *CA
	// User and Password are its only htpasswd entry.
	User, Password string
	// Log receives the registry's output; nil discards it.
	Log io.Writer
}

// Parent is a running parent registry.
type Parent struct {
	Host string // host:port
	cmd  *exec.Cmd
	done chan struct{}
}

// WriteParentConfig writes the parent's certificate (for the host of o.Addr, signed by o.CA), htpasswd file and
// Distribution configuration into o.Dir, and returns the configuration's path and the environment to run the
// registry with. StartParent uses it; tests that run the process themselves do too.
func WriteParentConfig(o ParentOptions) (config string, env []string, err error) {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return "", nil, fmt.Errorf("parent address %q: %w", o.Addr, err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return "", nil, err
	}
	var ips []net.IP
	var names []string
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	} else {
		names = append(names, host)
	}
	certPEM, keyPEM, err := o.CA.Issue("parent registry", ips, names)
	if err != nil {
		return "", nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
	if err != nil {
		return "", nil, err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %[1]s/data
http:
  addr: %[2]s
  tls:
    certificate: %[1]s/tls.crt
    key: %[1]s/tls.key
auth:
  htpasswd:
    realm: parent
    path: %[1]s/htpasswd
`, o.Dir, o.Addr)
	for name, data := range map[string][]byte{
		"tls.crt": certPEM, "tls.key": keyPEM, "config.yml": []byte(cfg),
		"htpasswd": []byte(o.User + ":" + string(hash) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(o.Dir, name), data, 0o600); err != nil {
			return "", nil, err
		}
	}
	env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + o.Dir, "OTEL_TRACES_EXPORTER=none"}
	return filepath.Join(o.Dir, "config.yml"), env, nil
}

// StartParent starts the parent registry and waits until it serves TLS.
func StartParent(ctx context.Context, o ParentOptions) (*Parent, error) {
	config, env, err := WriteParentConfig(o)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Bin, "serve", config)
	cmd.Env = env
	if o.Log != nil {
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting parent registry %s: %w", o.Bin, err)
	}
	p := &Parent{Host: o.Addr, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	client := &http.Client{Transport: o.CA.Transport(), Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, errors.New("parent registry exited during start-up")
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		default:
		}
		resp, err := client.Get("https://" + o.Addr + "/")
		if err == nil {
			resp.Body.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("parent registry at %s not ready: %w", o.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid is the parent registry process's id, for benchmarks that count its CPU time.
func (p *Parent) Pid() int { return p.cmd.Process.Pid }

// Stop kills the parent registry and waits for it to exit.
func (p *Parent) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
