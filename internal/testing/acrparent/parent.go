package acrparent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/connstring"
	"github.com/connected-registry/connected-registry/internal/testing/testenv"
)

// Defaults of Options.
const (
	DefaultTokenLifetime      = 5 * time.Minute
	DefaultStorageURLLifetime = 10 * time.Minute
	// Issuer is the iss claim of the parent's tokens and Distribution's auth.token.issuer.
	Issuer = "acrparent test token issuer"
)

// Options describe the test parent.
type Options struct {
	// Bin is the Distribution v3 registry binary (bin/registry, built by ci/tools.sh).
	Bin string
	// Dir holds the configuration, certificates and Distribution's storage (under data/, kept across starts).
	Dir string
	// Addr is the parent's public host:port: the registry API and the token endpoint. Port 0 picks a free port.
	// Default 127.0.0.1:0. The certificate's SANs hold its host.
	Addr string
	// StorageAddr is the storage host's host:port; the host is the name redirects and the certificate carry,
	// and the storage host listens on its address. Default: localhost:0 when Addr's host is a loopback IP, else
	// Addr's host with port 0.
	//
	// Another host name is what ACR has (blob.core.windows.net beside azurecr.io). An IP literal of its own
	// does not do on loopback: go-containerregistry v0.22 refuses a redirect to another IP literal that is
	// private or loopback ("SSRF protection"); a name, or the same IP on another port, passes. On the same
	// host name, Go's HTTP client copies the headers its caller set (Authorization included) to the redirect;
	// headers a RoundTripper adds (go-containerregistry's and Distribution's tokens) are not copied.
	StorageAddr string
	// CA signs the certificates of both listeners.
	CA *testenv.CA
	// SyncToken is the token of the connection string. Default: name "sync-token", a random password, every
	// repository, pull only.
	SyncToken Account
	// Tokens are further accounts (for example one limited to some repositories).
	Tokens []Account
	// AnonymousPull lists repositories anyone may pull without credentials, as ACR's anonymous pull allows for a
	// whole registry: the token endpoint answers a request without Basic auth with pull of these only. Empty
	// requires credentials for everything.
	AnonymousPull []string
	// TokenLifetime is how long Distribution accepts a token after the issuer made it; expires_in says so.
	// Default DefaultTokenLifetime. The exp claim is TokenLifetime - DistributionLeeway after issued_at,
	// rounded up to a second, since Distribution accepts a token until exp + 60 s.
	TokenLifetime time.Duration
	// StorageURLLifetime is how long a signed storage URL is good for. Default DefaultStorageURLLifetime.
	StorageURLLifetime time.Duration
	// Log receives the Distribution process's output and the front's errors; nil discards them.
	Log io.Writer
}

// Parent is a running test parent.
type Parent struct {
	// Host is the registry API's host:port (ParentGatewayEndpoint), and the token service's name.
	Host string
	// URL is https://Host.
	URL string
	// Realm is the token endpoint, https://Host/oauth2/token.
	Realm string
	// StorageHost is the storage host's host:port.
	StorageHost string
	// CAPEM is the CA certificate that signed both listeners' certificates.
	CAPEM []byte
	// SyncToken is the connection string's account.
	SyncToken Account
	// Admin may push to every repository; Push uses it.
	Admin Account
	// Dir is Options.Dir; Distribution's storage is Dir/data.
	Dir string

	ca        *testenv.CA
	sas       *sas
	rec       *recorder
	listeners []net.Listener
	servers   []*http.Server
	proc      *process
}

// Start starts Distribution, the token issuer, the front and the storage host, and waits until they serve.
func Start(ctx context.Context, o Options) (*Parent, error) {
	if o.Bin == "" || o.Dir == "" || o.CA == nil {
		return nil, errors.New("acrparent: Options.Bin, Dir and CA are required")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = DefaultTokenLifetime
	}
	if o.StorageURLLifetime <= 0 {
		o.StorageURLLifetime = DefaultStorageURLLifetime
	}
	if o.SyncToken.Name == "" {
		o.SyncToken.Name = "sync-token"
	}
	if o.SyncToken.Password == "" {
		o.SyncToken.Password = randomHex(16)
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "data"), 0o755); err != nil {
		return nil, err
	}

	p := &Parent{SyncToken: o.SyncToken, Admin: Account{Name: "acrparent-admin", Password: randomHex(16), Push: true},
		CAPEM: o.CA.CertPEM, Dir: o.Dir, ca: o.CA, rec: &recorder{}}
	ok := false
	defer func() {
		if !ok {
			p.Stop()
		}
	}()

	apiLn, apiHost, err := listen(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("parent address %q: %w", o.Addr, err)
	}
	p.listeners = append(p.listeners, apiLn)
	p.Host, p.URL, p.Realm = apiHost, "https://"+apiHost, "https://"+apiHost+"/oauth2/token"
	storageAddr := o.StorageAddr
	if storageAddr == "" {
		host, _, _ := net.SplitHostPort(apiHost)
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			host = "localhost"
		}
		storageAddr = net.JoinHostPort(host, "0")
	}
	storageLn, storageHostPort, err := listen(storageAddr)
	if err != nil {
		return nil, fmt.Errorf("storage address %q: %w", storageAddr, err)
	}
	p.listeners = append(p.listeners, storageLn)
	p.StorageHost = storageHostPort

	accounts := append([]Account{o.SyncToken, p.Admin}, o.Tokens...)
	is, err := newIssuer(Issuer, p.Host, o.TokenLifetime, accounts, p.rec)
	if err == nil && len(o.AnonymousPull) > 0 {
		is.anonymous = &Account{Name: AnonymousSubject, Repositories: slices.Clone(o.AnonymousPull)}
	}
	if err != nil {
		return nil, err
	}
	signer, err := newSAS(o.StorageURLLifetime)
	if err != nil {
		return nil, err
	}
	p.sas = signer

	// Distribution, plain HTTP on a loopback port only the front talks to.
	backendPort, err := freePort()
	if err != nil {
		return nil, err
	}
	backend := "127.0.0.1:" + backendPort
	config, env, err := writeParentConfig(o.Dir, backend, p, is.certPEM)
	if err != nil {
		return nil, err
	}
	p.proc, err = startProcess(o.Bin, []string{"serve", config}, env, logw)
	if err != nil {
		return nil, err
	}
	if err := p.proc.waitHTTP(ctx, &http.Client{Timeout: 2 * time.Second}, "http://"+backend+"/v2/"); err != nil {
		return nil, fmt.Errorf("the parent's Distribution process: %w", err)
	}

	// The front and the storage host.
	errLog := log.New(logw, "acrparent: ", 0)
	target := &url.URL{Scheme: "http", Host: backend}
	f := &front{issuer: is, sas: signer, storageHost: p.StorageHost, rec: p.rec}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // Distribution's http.host names the public address anyway
			r.SetXForwarded()
		},
		ModifyResponse: f.signRedirect,
		Transport:      &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true},
		ErrorLog:       errLog,
	}
	for _, s := range []struct {
		ln      net.Listener
		host    string
		cn      string
		handler http.Handler
	}{
		{apiLn, p.Host, "acrparent registry API (test stand-in for ACR)", f},
		{storageLn, p.StorageHost, "acrparent storage host (test stand-in for Azure Blob Storage)",
			&storageHost{root: filepath.Join(o.Dir, "data"), sas: signer, log: p.rec}},
	} {
		cert, err := serving(o.CA, s.cn, s.host)
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: s.handler, ErrorLog: errLog, ReadHeaderTimeout: 30 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
		p.servers = append(p.servers, srv)
		go func(ln net.Listener) { _ = srv.ServeTLS(ln, "", "") }(s.ln)
	}
	ok = true
	return p, nil
}

// Stop stops the front, the storage host and the Distribution process (killed, as testenv's parent is).
// Distribution's storage stays in Dir/data: Start with the same Options (and a fixed Addr port) serves it again, with
// new keys (clients fetch new tokens).
func (p *Parent) Stop() {
	if p == nil {
		return
	}
	for _, s := range p.servers {
		_ = s.Close()
	}
	for _, ln := range p.listeners {
		_ = ln.Close() // those no server took yet
	}
	p.servers, p.listeners = nil, nil
	if p.proc != nil {
		p.proc.kill()
	}
}

// Log returns a copy of what the parent has recorded so far.
func (p *Parent) Log() Log { return p.rec.snapshot() }

// BlobGets counts the blob downloads the storage host has served so far (as tests/e2e's ParentBlobGets does
// for the Basic parent's access log).
func (p *Parent) BlobGets() int { return p.Log().BlobGets() }

// ConnectionString is the connection string of a connected registry named registryName that syncs from this
// parent with SyncToken, as `az acr connected-registry get-settings` gives one.
func (p *Parent) ConnectionString(registryName string) string {
	return connstring.ConnectionString{
		ConnectedRegistryName:  registryName,
		SyncTokenName:          p.SyncToken.Name,
		SyncTokenPassword:      p.SyncToken.Password,
		ParentGatewayEndpoint:  p.Host,
		ParentEndpointProtocol: "https",
	}.Encode()
}

// Transport trusts only the test CA and speaks HTTPS only (go-containerregistry falls back to plain HTTP for
// loopback addresses, which would hide a listener without TLS).
func (p *Parent) Transport() http.RoundTripper { return httpsOnly{p.ca.Transport()} }

// RemoteOptions are go-containerregistry options for this parent: its CA only, HTTPS only, auth, no retries.
func (p *Parent) RemoteOptions(ctx context.Context, auth authn.Authenticator) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(p.Transport()), remote.WithAuth(auth),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1})}
}

// Push seeds the parent: it pushes an image or an index to repo:tag (a path under the parent, such as
// "demo/app:v1") with the Admin account, through the token flow.
func (p *Parent) Push(ctx context.Context, repoTag string, t remote.Taggable) error {
	ref, err := name.ParseReference(p.Host + "/" + repoTag)
	if err != nil {
		return err
	}
	admin := &authn.Basic{Username: p.Admin.Name, Password: p.Admin.Password}
	if err := remote.Push(ref, t, p.RemoteOptions(ctx, admin)...); err != nil {
		return fmt.Errorf("seeding the parent with %s: %w", ref, err)
	}
	return nil
}

// front is the parent's public listener: the token endpoint, and everything else passed to Distribution.
type front struct {
	issuer      *issuer
	proxy       *httputil.ReverseProxy
	sas         *sas
	storageHost string
	rec         *recorder
}

type apiRecordKey struct{}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth2/token" {
		f.issuer.ServeHTTP(w, r)
		return
	}
	rec := &APIRequest{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok {
		rec.Auth = scheme
	}
	cw := &countingWriter{ResponseWriter: w}
	f.proxy.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), apiRecordKey{}, rec)))
	rec.Status, rec.Bytes = cw.status(), cw.n
	f.rec.api(*rec)
}

// signRedirect adds the signature to Distribution's redirects to the storage host (its redirect storage
// middleware makes them: https://<storage host>/docker/registry/v2/blobs/sha256/…/data).
func (f *front) signRedirect(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err == nil && u.Scheme == "https" && u.Host == f.storageHost {
		f.sas.sign(u, f.sas.now().Add(f.sas.lifetime))
		loc = u.String()
		resp.Header.Set("Location", loc)
	}
	if rec, ok := resp.Request.Context().Value(apiRecordKey{}).(*APIRequest); ok {
		rec.Location = loc
	}
	return nil
}

// writeParentConfig writes Distribution's configuration and the token signing certificate.
func writeParentConfig(dir, backend string, p *Parent, signerPEM []byte) (string, []string, error) {
	bundle := filepath.Join(dir, "token-signer.crt")
	if err := os.WriteFile(bundle, signerPEM, 0o644); err != nil {
		return "", nil, err
	}
	cfg := map[string]any{
		"version": "0.1",
		"log": map[string]any{"level": "info", "formatter": "text",
			"accesslog": map[string]any{"disabled": false}},
		"storage": map[string]any{
			"filesystem": map[string]any{"rootdirectory": filepath.Join(dir, "data")},
			"redirect":   map[string]any{"disable": false},
		},
		"http": map[string]any{
			"addr": backend,
			// URLs Distribution builds (upload locations) name the public address.
			"host":   p.URL,
			"secret": randomHex(16),
		},
		"auth": map[string]any{"token": map[string]any{
			"realm":             p.Realm,
			"service":           p.Host,
			"issuer":            Issuer,
			"rootcertbundle":    bundle,
			"signingalgorithms": []string{"ES256"},
		}},
		"middleware": map[string]any{"storage": []any{map[string]any{
			"name":    "redirect",
			"options": map[string]any{"baseurl": "https://" + p.StorageHost + "/"},
		}}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return "", nil, err
	}
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		return "", nil, err
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "OTEL_TRACES_EXPORTER=none"}
	return config, env, nil
}

// listen listens on addr and returns the listener and its host:port (the host as given, the port as bound).
func listen(addr string) (net.Listener, string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return ln, net.JoinHostPort(host, port), nil
}

// serving issues a certificate for hostPort's host.
func serving(ca *testenv.CA, cn, hostPort string) (tls.Certificate, error) {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return tls.Certificate{}, err
	}
	var ips []net.IP
	var names []string
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	} else {
		names = append(names, host)
	}
	certPEM, keyPEM, err := ca.Issue(cn, ips, names)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24 and later)
	return hex.EncodeToString(b)
}

// httpsOnly refuses every request that is not HTTPS.
type httpsOnly struct{ base http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("test client refuses %s://%s%s: it speaks https only", r.URL.Scheme, r.URL.Host, r.URL.Path)
	}
	return h.base.RoundTrip(r)
}
