package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/connected-registry/connected-registry/internal/clientauth"
)

// TokenServerOptions runs the client-token issuer, a native sidecar of the registry pod when client tokens are
// on: the realm of Distribution's auth.token (package clientauth).
type TokenServerOptions struct {
	KubeOptions
	// Secret holds the client tokens, one key per token.
	Secret string
	// Listen is the TLS address of the registry's front: the token endpoint, and every other request passed to
	// RegistryURL's host (clientauth.Front).
	Listen string
	// TLSDir holds tls.crt and tls.key, the registry's certificate as the tls-reloader writes it.
	TLSDir string
	// Service and Issuer are auth.token.service and auth.token.issuer of the registry's configuration.
	Service, Issuer string
	// Lifetime is how long the registry accepts an issued token: the bound on a revoked password's tokens.
	Lifetime time.Duration
	// KeyDir keeps the private signing keys (an in-memory volume only this container mounts); JWKSFile is the
	// public key set the registry reads (auth.token.jwks).
	KeyDir, JWKSFile string
	// FailEvery and FailBurst shape the token buckets of failed attempts, per client IP and per token name.
	FailEvery time.Duration
	FailBurst int
	// RotateEvery rotates the signing key this often, once the registry trusts the next key (0: never).
	RotateEvery time.Duration
	// RegistryURL is the registry's /v2/ in the pod: the front passes requests to its host, and a rotation asks
	// it with a token of the next key first.
	RegistryURL string
	registry    *url.URL
	// HealthAddr serves /started once the key set is written and the tokens Secret read.
	HealthAddr string
	// PullSecret is the name of the pull Secrets written into PullSecretNamespaces from the client token's name
	// and password in PullSecretCredentials (a Secret of this namespace); Server is the registry they name and
	// PullSecretOwner the release (<namespace>/<release>) marked on them.
	PullSecret, PullSecretCredentials, Server, PullSecretOwner string
	PullSecretNamespaces                                       []string
}

// AddFlags registers the flags.
func (o *TokenServerOptions) AddFlags(fs *FlagSet) {
	o.addFlags(fs, "TOKEN_SERVER", "limit of each request to the API server")
	const p = "CONNECTED_REGISTRY_TOKEN_SERVER_"
	fs.StringVar(&o.Secret, "secret", p+"SECRET", "", "the Secret of the client tokens, one key per token (required)")
	fs.StringVar(&o.Listen, "listen", p+"LISTEN", ":5001", "TLS address of the registry's front: "+clientauth.TokenPath+" is the token endpoint, every other path goes to --registry-url's host")
	fs.StringVar(&o.TLSDir, "tls-dir", p+"TLS_DIR", "/etc/connected-registry/tls", "directory of tls.crt and tls.key, read again when they change")
	fs.StringVar(&o.Service, "service", p+"SERVICE", "", "the registry's auth.token.service: the aud claim (required)")
	fs.StringVar(&o.Issuer, "issuer", p+"ISSUER", "connected-registry-token-server", "the registry's auth.token.issuer: the iss claim")
	fs.DurationVar(&o.Lifetime, "token-lifetime", p+"TOKEN_LIFETIME", 5*time.Minute,
		"how long the registry accepts an issued token, at least "+clientauth.MinLifetime.String()+": a revoked password's tokens work at most this long")
	fs.StringVar(&o.KeyDir, "key-dir", p+"KEY_DIR", "", "directory (in memory) keeping the private signing keys across restarts of this container (required)")
	fs.StringVar(&o.JWKSFile, "jwks-file", p+"JWKS_FILE", "", "file receiving the public keys the registry trusts, its auth.token.jwks (required)")
	fs.DurationVar(&o.FailEvery, "fail-every", p+"FAIL_EVERY", 10*time.Second, "one failed attempt per client IP and per token name comes back this often")
	fs.IntVar(&o.FailBurst, "fail-burst", p+"FAIL_BURST", 5, "failed attempts per client IP and per token name before the issuer answers 429")
	fs.DurationVar(&o.RotateEvery, "rotate-every", p+"ROTATE_EVERY", 0,
		"rotate the signing key this often, once the registry trusts the next key (it reads its key set only when it starts); 0 rotates at pod start only")
	fs.StringVar(&o.RegistryURL, "registry-url", p+"REGISTRY_URL", "https://127.0.0.1:5443/v2/", "the registry's /v2/ in the pod: the front passes requests to its host, a rotation asks it first")
	fs.StringVar(&o.HealthAddr, "health-addr", p+"HEALTH_ADDR", ":8083", "address of /started for the startup probe; empty serves none")
	fs.ListVar(&o.PullSecretNamespaces, "pull-secret-namespaces", p+"PULL_SECRET_NAMESPACES", nil,
		"namespaces to write a kubernetes.io/dockerconfigjson pull Secret into, comma-separated (none: write none)")
	fs.StringVar(&o.PullSecret, "pull-secret", p+"PULL_SECRET", "connected-registry-pull", "name of the pull Secret in each of --pull-secret-namespaces")
	fs.StringVar(&o.PullSecretCredentials, "pull-secret-credentials", p+"PULL_SECRET_CREDENTIALS", "",
		"Secret of this namespace with keys username and password: the client token the pull Secrets hold")
	fs.StringVar(&o.Server, "server", p+"SERVER", "", "the registry the pull Secrets name, <clusterIP>:443; empty: --service")
	fs.StringVar(&o.PullSecretOwner, "pull-secret-owner", p+"PULL_SECRET_OWNER", "", "the release, <namespace>/<release>, marked on the pull Secrets it writes (required with --pull-secret-namespaces)")
}

// Complete checks the flags and builds the API client.
func (o *TokenServerOptions) Complete() error {
	if o.Secret == "" || o.Service == "" || o.KeyDir == "" || o.JWKSFile == "" {
		return usageErrorf("--secret, --service, --key-dir and --jwks-file are required")
	}
	if o.Lifetime < clientauth.MinLifetime {
		return usageErrorf("--token-lifetime %s is shorter than %s: the registry accepts a token up to %s after its exp claim, which must not lie before its issue",
			o.Lifetime, clientauth.MinLifetime, clientauth.Leeway)
	}
	if o.FailEvery <= 0 || o.FailBurst <= 0 {
		return usageErrorf("--fail-every and --fail-burst must be positive")
	}
	if len(o.PullSecretNamespaces) > 0 && (o.PullSecretCredentials == "" || o.PullSecret == "" || o.PullSecretOwner == "") {
		return usageErrorf("--pull-secret-namespaces needs --pull-secret-credentials, --pull-secret and --pull-secret-owner")
	}
	if o.Server == "" {
		o.Server = o.Service
	}
	if o.RotateEvery < 0 {
		return usageErrorf("--rotate-every must not be negative, got %s", o.RotateEvery)
	}
	u, err := url.Parse(o.RegistryURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return usageErrorf("--registry-url %q is not an https URL of the registry in the pod", o.RegistryURL)
	}
	o.registry = &url.URL{Scheme: u.Scheme, Host: u.Host}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o.complete()
}

// loadKeys reads the keys an earlier run of this container kept, or makes and keeps new ones.
func (o *TokenServerOptions) loadKeys() (*clientauth.Keys, error) {
	path := filepath.Join(o.KeyDir, "keys.json")
	if b, err := os.ReadFile(path); err == nil {
		keys, err := clientauth.UnmarshalKeys(b)
		if err == nil {
			o.Log.Info("signing keys of an earlier run kept", "kid", keys.CurrentKID(), "next", keys.NextKID())
			return keys, nil
		}
		o.Log.Warn("signing keys of an earlier run unreadable: new keys", "err", err)
	}
	keys, err := clientauth.NewKeys()
	if err != nil {
		return nil, err
	}
	return keys, o.saveKeys(keys)
}

func (o *TokenServerOptions) saveKeys(keys *clientauth.Keys) error {
	b, err := keys.MarshalPrivate()
	if err != nil {
		return err
	}
	if err := clientauth.WriteFileAtomic(filepath.Join(o.KeyDir, "keys.json"), b, 0o600); err != nil {
		return fmt.Errorf("keeping the signing keys in --key-dir: %w", err)
	}
	return nil
}

func (o *TokenServerOptions) publish(keys *clientauth.Keys) error {
	b, err := keys.JWKS(time.Now())
	if err != nil {
		return err
	}
	if err := clientauth.WriteFileAtomic(o.JWKSFile, b, 0o644); err != nil {
		return fmt.Errorf("writing --jwks-file: %w", err)
	}
	return nil
}

// Run serves the token endpoint until ctx ends.
func (o *TokenServerOptions) Run(ctx context.Context, out io.Writer) error {
	keys, err := o.loadKeys()
	if err != nil {
		return err
	}
	if err := o.publish(keys); err != nil {
		return err
	}
	is := &clientauth.Issuer{Service: o.Service, Name: o.Issuer, Lifetime: o.Lifetime, Keys: keys,
		FailEvery: o.FailEvery, FailBurst: o.FailBurst, Log: o.Log}
	if err := clientauth.Watch(ctx, o.Client, o.Namespace, o.Secret, is, o.Log); err != nil {
		return err
	}
	if len(o.PullSecretNamespaces) > 0 {
		ps := &clientauth.PullSecrets{Client: o.Client, SourceNamespace: o.Namespace, Source: o.PullSecretCredentials,
			Name: o.PullSecret, Server: o.Server, Namespaces: o.PullSecretNamespaces, Owner: o.PullSecretOwner}
		go ps.Follow(ctx, time.Minute, o.Log)
	}
	var started atomic.Bool
	stop, err := serveHealth(o.HealthAddr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	if err != nil {
		return err
	}
	defer stop()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.Listen, err)
	}
	certs := &clientauth.CertFiles{Cert: filepath.Join(o.TLSDir, "tls.crt"), Key: filepath.Join(o.TLSDir, "tls.key")}
	// The registry on the pod's loopback: the front checks nothing (the registry checks every bearer token), so
	// the identity of what answers there does not matter.
	upstream := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback in the pod
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 5 * time.Minute}
	// No read or write timeout: blobs of many gigabytes stream through the front, as they do from the registry.
	srv := &http.Server{Handler: clientauth.Front(is, o.registry, upstream), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	started.Store(true)
	fmt.Fprintf(out, "token server listening on %s: service %q, issuer %q, token lifetime %s, tokens Secret %s/%s, signing key %s (next %s)\n",
		ln.Addr(), o.Service, o.Issuer, o.Lifetime, o.Namespace, o.Secret, keys.CurrentKID(), keys.NextKID())
	var tick <-chan time.Time
	if o.RotateEvery > 0 {
		t := time.NewTicker(o.RotateEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-tick:
			o.rotate(ctx, is)
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			err := srv.Shutdown(shutdown)
			if errors.Is(err, context.DeadlineExceeded) {
				// Connections still busy after 5 s, or opened and never used (a client's spare connection is
				// "new" to the server until its first request): the pod is going away, so close them.
				o.Log.Warn("closing the connections still open 5s after the shutdown began")
				return srv.Close()
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
}

// rotate makes the next key current if the registry already trusts it: it asks the registry's /v2/ with a
// token of the next key, which it answers 200 only then. Distribution reads its key set when it starts, so the
// key published as next after a rotation becomes usable after the registry's next restart (the tls-reloader
// restarts it on each renewed certificate; a new pod starts with new keys).
func (o *TokenServerOptions) rotate(ctx context.Context, is *clientauth.Issuer) {
	probe, err := is.ProbeToken(time.Now())
	if err != nil {
		o.Log.Error("key rotation: signing the probe", "err", err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.RegistryURL, nil)
	if err != nil {
		o.Log.Error("key rotation: --registry-url", "err", err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+probe)
	// The registry on the pod's loopback: the probe grants nothing, so the server's identity does not matter.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback probe without access
	resp, err := c.Do(req)
	if err != nil {
		o.Log.Warn("key rotation postponed: the registry did not answer", "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		o.Log.Info("key rotation postponed: the registry does not trust the next key yet (it reads its key set when it starts)",
			"next", is.Keys.NextKID(), "status", resp.StatusCode)
		return
	}
	if err := is.Keys.Rotate(time.Now().Add(o.Lifetime)); err != nil {
		o.Log.Error("key rotation", "err", err)
		return
	}
	if err := o.saveKeys(is.Keys); err != nil {
		o.Log.Error("key rotation", "err", err)
	}
	if err := o.publish(is.Keys); err != nil {
		o.Log.Error("key rotation", "err", err)
		return
	}
	o.Log.Info("signing key rotated", "kid", is.Keys.CurrentKID(), "next", is.Keys.NextKID())
}
