package acrparent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// ProxyOptions describe a connected registry: Distribution as a pull-through cache (proxy:) of a parent.
type ProxyOptions struct {
	// Bin is the Distribution v3 registry binary.
	Bin string
	// Dir holds its configuration, certificate, trust bundle and cache (under data/).
	Dir string
	// Addr is the host:port it serves HTTPS on; port 0 picks a free one. Default 127.0.0.1:0.
	Addr string
	// CA signs its certificate, and is the only root it trusts for the parent (SSL_CERT_FILE): Distribution has
	// no option for a parent's CA.
	CA *testenv.CA
	// RemoteURL is proxy.remoteurl: the parent (https://<Parent.Host>), or whatever stands between.
	RemoteURL string
	// Username and Password are proxy.username and proxy.password (the sync token).
	Username, Password string
	// Log receives the registry's output; nil discards it.
	Log io.Writer
}

// WriteProxyConfig writes a connected registry's configuration (Distribution v3 pull-through cache with
// proxy.remoteurl, username and password, ttl 0s, TLS) and its certificate and trust bundle into o.Dir, and
// returns the configuration's path and the environment to run `registry serve` with. With a username
// Distribution pings remoteurl at start-up and panics if it does not answer.
func WriteProxyConfig(o ProxyOptions) (config string, env []string, err error) {
	if o.Dir == "" || o.CA == nil || o.RemoteURL == "" || o.Addr == "" {
		return "", nil, errors.New("acrparent: ProxyOptions.Dir, Addr, CA and RemoteURL are required")
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "data"), 0o755); err != nil {
		return "", nil, err
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return "", nil, fmt.Errorf("connected registry address %q: %w", o.Addr, err)
	}
	var ips []net.IP
	var names []string
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	} else {
		names = append(names, host)
	}
	certPEM, keyPEM, err := o.CA.Issue("connected registry", ips, names)
	if err != nil {
		return "", nil, err
	}
	cfg := map[string]any{
		"version": "0.1",
		"log": map[string]any{"level": "info", "formatter": "text",
			"accesslog": map[string]any{"disabled": false}},
		"storage": map[string]any{"filesystem": map[string]any{"rootdirectory": filepath.Join(o.Dir, "data")}},
		"http": map[string]any{
			"addr":   o.Addr,
			"secret": randomHex(16),
			"tls": map[string]any{
				"certificate": filepath.Join(o.Dir, "tls.crt"),
				"key":         filepath.Join(o.Dir, "tls.key"),
			},
		},
		"proxy": map[string]any{
			"remoteurl": o.RemoteURL,
			"username":  o.Username,
			"password":  o.Password,
			"ttl":       "0s",
		},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return "", nil, err
	}
	files := map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "parent-ca.crt": o.CA.CertPEM, "config.yml": data}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(o.Dir, name), content, 0o600); err != nil {
			return "", nil, err
		}
	}
	env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + o.Dir, "OTEL_TRACES_EXPORTER=none",
		"SSL_CERT_FILE=" + filepath.Join(o.Dir, "parent-ca.crt")}
	return filepath.Join(o.Dir, "config.yml"), env, nil
}

// Proxy is a running connected registry.
type Proxy struct {
	// Host is its host:port.
	Host string
	proc *process
}

// StartProxy writes the configuration (WriteProxyConfig) and starts the connected registry, waiting until it
// serves TLS.
func StartProxy(ctx context.Context, o ProxyOptions) (*Proxy, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if host, port, err := net.SplitHostPort(o.Addr); err == nil && port == "0" {
		free, err := freePort()
		if err != nil {
			return nil, err
		}
		o.Addr = net.JoinHostPort(host, free)
	}
	config, env, err := WriteProxyConfig(o)
	if err != nil {
		return nil, err
	}
	out := o.Log
	if out == nil {
		out = io.Discard
	}
	proc, err := startProcess(o.Bin, []string{"serve", config}, env, out)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: httpsOnly{o.CA.Transport()}, Timeout: 2 * time.Second}
	if err := proc.waitHTTP(ctx, client, "https://"+o.Addr+"/v2/"); err != nil {
		proc.kill()
		return nil, fmt.Errorf("the connected registry: %w", err)
	}
	return &Proxy{Host: o.Addr, proc: proc}, nil
}

// Stop kills the connected registry and waits for it to exit.
func (p *Proxy) Stop() {
	if p != nil && p.proc != nil {
		p.proc.kill()
	}
}
