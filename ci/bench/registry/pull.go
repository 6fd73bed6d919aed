package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// puller pulls an image the way a node's container runtime does: the manifest by tag or digest, then, for an
// index, every platform's manifest, then configs and layers. It speaks only HTTPS, trusts only the given
// roots, checks every manifest and blob against its digest while reading it, and keeps its own connections
// (one puller is one node).
type puller struct {
	hc         *http.Client
	base       string // https://host:port
	user, pass string // Basic credentials, empty for anonymous
}

// clientProto selects the HTTP version a puller offers.
type clientProto string

const (
	// http1 is what a Go client with its own TLS configuration speaks (containerd's resolver, crane).
	http1 clientProto = "HTTP/1.1"
	// http2 offers h2 by ALPN, as clients that force HTTP/2 attempts do.
	http2 clientProto = "HTTP/2"
)

func newPuller(roots *x509.CertPool, host string, proto clientProto, user, pass string, timeout time.Duration) *puller {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		ForceAttemptHTTP2:   proto == http2,
		DisableCompression:  true,
	}
	return &puller{hc: &http.Client{Transport: tr, Timeout: timeout}, base: "https://" + host, user: user, pass: pass}
}

func (p *puller) close() { p.hc.CloseIdleConnections() }

var manifestAccept = strings.Join([]string{
	string(types.OCIImageIndex), string(types.OCIManifestSchema1),
	string(types.DockerManifestList), string(types.DockerManifestSchema2),
}, ", ")

func (p *puller) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if p.user != "" {
		req.SetBasicAuth(p.user, p.pass)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

// fetch reads path, checks its digest and returns the bytes read; keep returns the body too (manifests).
func (p *puller) fetch(ctx context.Context, path, accept string, want v1.Hash, keep bool) (int64, []byte, error) {
	resp, err := p.get(ctx, path, accept)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	var kept strings.Builder
	var w io.Writer = h
	if keep {
		w = io.MultiWriter(h, &kept)
	}
	n, err := io.CopyBuffer(w, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return n, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if want.Hex != "" && got != want {
		return n, nil, fmt.Errorf("%s has digest %s, want %s", path, got, want)
	}
	return n, []byte(kept.String()), nil
}

// pull reads ref (a tag or a digest) of repo and everything it refers to, checking that the top manifest has
// digest want. It returns the bytes read.
func (p *puller) pull(ctx context.Context, repo, ref string, want v1.Hash) (int64, error) {
	var total int64
	n, raw, err := p.fetch(ctx, "/v2/"+repo+"/manifests/"+ref, manifestAccept, v1.Hash{}, true)
	total += n
	if err != nil {
		return total, err
	}
	if got := sha256Hash(raw); got != want {
		return total, fmt.Errorf("%s:%s has digest %s, want the parent's %s", repo, ref, got, want)
	}
	var head struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return total, fmt.Errorf("%s:%s: %w", repo, ref, err)
	}
	manifests := []v1.Hash{want}
	bodies := map[v1.Hash][]byte{want: raw}
	if head.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
		if err != nil {
			return total, err
		}
		manifests = manifests[:0]
		for _, m := range im.Manifests {
			n, body, err := p.fetch(ctx, "/v2/"+repo+"/manifests/"+m.Digest.String(), manifestAccept, m.Digest, true)
			total += n
			if err != nil {
				return total, err
			}
			manifests = append(manifests, m.Digest)
			bodies[m.Digest] = body
		}
	}
	for _, d := range manifests {
		m, err := v1.ParseManifest(strings.NewReader(string(bodies[d])))
		if err != nil {
			return total, fmt.Errorf("manifest %s: %w", d, err)
		}
		for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			n, _, err := p.fetch(ctx, "/v2/"+repo+"/blobs/"+b.Digest.String(), "", b.Digest, false)
			total += n
			if err != nil {
				return total, err
			}
			if n != b.Size {
				return total, fmt.Errorf("blob %s has %d bytes, the manifest says %d", b.Digest, n, b.Size)
			}
		}
	}
	return total, nil
}

func sha256Hash(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}
