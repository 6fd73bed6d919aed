package imagebuild

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Errors of a registry client that meets the wrong scheme.
var (
	// ErrPlainHTTP: the client speaks HTTPS only, and go-containerregistry tried plain HTTP (it does for
	// localhost, loopback and private addresses when HTTPS fails).
	ErrPlainHTTP = errors.New("refusing plain HTTP: this registry client speaks HTTPS only (use --insecure-http for a registry without TLS)")
	// ErrHTTPS: the client was told the registry speaks plain HTTP, and a request asked for HTTPS.
	ErrHTTPS = errors.New("refusing HTTPS: this registry client was told to speak plain HTTP only")
)

// RegistryClient is how images are pushed to and read from a registry: HTTPS only with the given roots, or plain
// HTTP only when InsecureHTTP is set, never a silent fallback from one to the other.
type RegistryClient struct {
	// RootCAs verify the registry's certificate; nil uses the system roots.
	RootCAs *x509.CertPool
	// Auth authenticates to the registry; nil is anonymous.
	Auth authn.Authenticator
	// InsecureHTTP speaks plain HTTP, without TLS, and nothing else.
	InsecureHTTP bool
	// Jobs is the number of concurrent blob uploads; 0 means 4.
	Jobs int
	// UserAgent is added to go-containerregistry's own; empty means "connected-registry-imagebuild".
	UserAgent string
}

// CertPoolFromFile returns the system roots plus the PEM certificates of file (for example a test CA).
func CertPoolFromFile(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// schemeGuard passes only requests of one scheme to its base transport.
type schemeGuard struct {
	base   http.RoundTripper
	scheme string
}

func (g schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != g.scheme {
		sentinel := ErrPlainHTTP
		if g.scheme == "http" {
			sentinel = ErrHTTPS
		}
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s %s://%s%s", sentinel, r.Method, r.URL.Scheme, r.URL.Host, r.URL.Path)
	}
	return g.base.RoundTrip(r)
}

// Transport returns the client's HTTP transport: its TLS roots, and a guard that refuses every request of the
// other scheme.
func (c *RegistryClient) Transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
	scheme := "https"
	if c.InsecureHTTP {
		scheme = "http"
	}
	return schemeGuard{base: t, scheme: scheme}
}

// Reference parses ref ("host:port/repo:tag"); with InsecureHTTP, the registry is marked insecure so
// go-containerregistry may speak plain HTTP to it at all.
func (c *RegistryClient) Reference(ref string) (name.Reference, error) {
	var opts []name.Option
	if c.InsecureHTTP {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return r, nil
}

// Options returns the go-containerregistry remote options of the client, for reading back what was pushed.
func (c *RegistryClient) Options(ctx context.Context) []remote.Option {
	auth := c.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	jobs := c.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	ua := c.UserAgent
	if ua == "" {
		ua = "connected-registry-imagebuild"
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(c.Transport()),
		remote.WithAuth(auth),
		remote.WithJobs(jobs),
		remote.WithUserAgent(ua),
	}
}

// PushIndex pushes idx, with every manifest and blob it refers to, as ref and returns the digest the registry
// now serves for ref, read back after the push.
func (c *RegistryClient) PushIndex(ctx context.Context, idx v1.ImageIndex, ref string) (v1.Hash, error) {
	r, err := c.Reference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	opts := c.Options(ctx)
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	desc, err := remote.Head(r, opts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("read back %s: %w", ref, err)
	}
	want, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if desc.Digest != want {
		return desc.Digest, fmt.Errorf("push %s: the registry serves %s, want %s", ref, desc.Digest, want)
	}
	return desc.Digest, nil
}

// Rename maps a repository path prefix (without the registry host) to another when pushing, such as
// "connected-registry/testdata/hello" to "samples/hello".
type Rename struct {
	From, To string
}

// ParseRename parses "FROM=TO".
func ParseRename(s string) (Rename, error) {
	from, to, ok := strings.Cut(s, "=")
	from, to = strings.Trim(from, "/"), strings.Trim(to, "/")
	if !ok || from == "" || to == "" {
		return Rename{}, fmt.Errorf("rename %q is not FROM=TO with two repository paths, such as connected-registry/testdata/hello=samples/hello", s)
	}
	return Rename{From: from, To: to}, nil
}

// DestinationRef returns where src ("ghcr.io/connected-registry/connected-registry:0.1.0") goes on registry ("host:port"):
// the same repository path and tag under registry, with the first matching rename applied at a path boundary.
func DestinationRef(src, registry string, renames []Rename) (string, error) {
	ref, err := name.ParseReference(src)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", src, err)
	}
	repo := ref.Context().RepositoryStr()
	for _, r := range renames {
		if repo == r.From {
			repo = r.To
			break
		}
		if rest, ok := strings.CutPrefix(repo, r.From+"/"); ok {
			repo = r.To + "/" + rest
			break
		}
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	dst := registry + "/" + repo + sep + ref.Identifier()
	if _, err := name.ParseReference(dst, name.StrictValidation); err != nil {
		return "", fmt.Errorf("destination of %s: %w", src, err)
	}
	return dst, nil
}

// Pushed is one reference pushed by PushArchive.
type Pushed struct {
	Source, Destination string
	Digest              v1.Hash
}

// PushArchive pushes every reference of an archive written by WriteArchive to registry, renamed by
// DestinationRef, and calls done after each.
func (c *RegistryClient) PushArchive(ctx context.Context, path, registry string, renames []Rename, done func(Pushed)) error {
	return c.PushArchiveRefs(ctx, path, registry, renames, nil, done)
}

// PushArchiveRefs is PushArchive for the references keep accepts (the archive's own, such as
// "ghcr.io/connected-registry/distribution:v3.1.2"); a nil keep pushes every reference.
func (c *RegistryClient) PushArchiveRefs(ctx context.Context, path, registry string, renames []Rename, keep func(ref string) bool, done func(Pushed)) error {
	ar, err := OpenArchive(path)
	if err != nil {
		return err
	}
	defer ar.Close()
	for _, e := range ar.Entries {
		if keep != nil && !keep(e.Ref) {
			continue
		}
		dst, err := DestinationRef(e.Ref, registry, renames)
		if err != nil {
			return err
		}
		idx, err := ar.Index(e)
		if err != nil {
			return err
		}
		d, err := c.PushIndex(ctx, idx, dst)
		if err != nil {
			return err
		}
		if done != nil {
			done(Pushed{Source: e.Ref, Destination: dst, Digest: d})
		}
	}
	return nil
}
