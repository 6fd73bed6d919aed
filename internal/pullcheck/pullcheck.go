// Package pullcheck pulls one image through the connected registry the way a node does: over TLS to
// <clusterIP>:443, trusting only the CA the release publishes, anonymously, one platform's manifest, config and
// layers, each digest verified. It is the chart's `helm test`. Its errors say what is wrong in the terms of the
// chart's values, never a bare status code.
package pullcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Check is one pull through the registry.
type Check struct {
	// Registry is the host:port nodes pull from, like 10.96.0.50:443 or [fd00::50]:443.
	Registry string
	// Image is repository:tag or repository@digest under Registry; empty checks only that the registry answers.
	Image string
	// RootCAs is the published CA bundle; nothing else is trusted.
	RootCAs *x509.CertPool
	// CASource names where RootCAs came from, for the messages.
	CASource string
	// Platform is the platform pulled from an index; empty is linux and this binary's architecture.
	Platform *v1.Platform
}

// Result is what a successful check pulled.
type Result struct {
	// Ref is the reference pulled, and Digest its manifest's digest.
	Ref, Digest string
	// Blobs and Bytes count the config and layers read, each verified against its digest.
	Blobs int
	Bytes int64
	Took  time.Duration
}

// Errors a Check wraps, to tell causes apart.
var (
	ErrUnreachable = errors.New("the registry does not answer")
	ErrUntrusted   = errors.New("the registry's certificate is not trusted")
	ErrRefused     = errors.New("the registry refused an anonymous pull")
	ErrNotFound    = errors.New("the image is neither cached nor at the parent")
	ErrPull        = errors.New("the pull failed")
)

// Run pulls the image, or only asks the registry's /v2/ when Image is empty.
func (c *Check) Run(ctx context.Context) (Result, error) {
	start := time.Now()
	tr := &http.Transport{
		Proxy:               nil, // the registry is inside the cluster: never through an outbound proxy
		TLSClientConfig:     &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	defer tr.CloseIdleConnections()
	// Ask /v2/ first, over TLS only: a failure here has a precise cause (the address, the certificate, the
	// credentials), and go-containerregistry would otherwise retry a private address in plain HTTP.
	if err := c.ping(ctx, tr); err != nil || c.Image == "" {
		return Result{Took: time.Since(start)}, err
	}
	ref, err := name.ParseReference(c.Registry+"/"+c.Image, name.StrictValidation)
	if err != nil {
		return Result{}, fmt.Errorf("test.image %q is not repository:tag or repository@sha256:…: %w", c.Image, err)
	}
	platform := c.Platform
	if platform == nil {
		platform = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(httpsOnly{tr}), remote.WithPlatform(*platform))
	if err != nil {
		return Result{}, c.explain(err)
	}
	res := Result{Ref: ref.String()}
	d, err := img.Digest()
	if err != nil {
		return Result{}, c.explain(err)
	}
	res.Digest = d.String()
	cfg, err := img.RawConfigFile()
	if err != nil {
		return Result{}, c.explain(fmt.Errorf("config: %w", err))
	}
	res.Blobs, res.Bytes = 1, int64(len(cfg))
	layers, err := img.Layers()
	if err != nil {
		return Result{}, c.explain(err)
	}
	for _, l := range layers {
		ld, _ := l.Digest()
		rc, err := l.Compressed() // verifies the digest and size as it is read
		if err != nil {
			return Result{}, c.explain(fmt.Errorf("layer %s: %w", ld, err))
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return Result{}, c.explain(fmt.Errorf("layer %s: %w", ld, err))
		}
		res.Blobs++
		res.Bytes += n
	}
	res.Took = time.Since(start)
	return res, nil
}

// ping asks GET /v2/, as a client does before a pull.
func (c *Check) ping(ctx context.Context, tr http.RoundTripper) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.Registry+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("registry address %q: %w", c.Registry, err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return c.explain(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		return c.explain(&transport.Error{StatusCode: resp.StatusCode})
	default:
		return fmt.Errorf("%w: GET https://%s/v2/ answered %s", ErrPull, c.Registry, resp.Status)
	}
}

// explain turns a pull error into what to do about it.
func (c *Check) explain(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var terr *transport.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w: https://%s presents a certificate that %s does not sign; the registry pod's tls-reloader publishes its CA there, so the registry serves a certificate other than the one the release issued (%v)", ErrUntrusted, c.Registry, c.CASource, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: the certificate at https://%s is not for that address (%v): it must hold service.clusterIP as an IP SAN; reissue it, or fix service.clusterIP", ErrUntrusted, c.Registry, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: the certificate at https://%s is not valid now (%v)", ErrUntrusted, c.Registry, err)
	case errors.As(err, &terr):
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: https://%s answered %d: client authentication is on, and pods pull with imagePullSecrets", ErrRefused, c.Registry, terr.StatusCode)
		case terr.StatusCode == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return fmt.Errorf("%w: %s/%s: check that test.image names a repository and tag that exist at the parent, that the sync token may read it, and that the registry reaches its parent (its parent-gate container's log says why not) (%v)", ErrNotFound, c.Registry, c.Image, err)
		}
		return fmt.Errorf("%w: %s/%s: %v", ErrPull, c.Registry, c.Image, err)
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("%w at https://%s: is the registry pod Ready (kubectl rollout status deployment), and is service.clusterIP the release's Service? (%v)", ErrUnreachable, c.Registry, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s/%s took longer than the test's timeout; the registry may still be fetching it from its parent (%v)", ErrPull, c.Registry, c.Image, err)
	}
	return fmt.Errorf("%w: %s/%s: %v", ErrPull, c.Registry, c.Image, err)
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// httpsOnly refuses plain HTTP: nodes pull from the registry over TLS only.
type httpsOnly struct{ base http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing %s://%s: nodes pull over https only", r.URL.Scheme, r.URL.Host)
	}
	return h.base.RoundTrip(r)
}
