package presync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/connected-registry/connected-registry/internal/registryapi"
)

// Media types of the manifests a sync walks.
const (
	mediaOCIIndex      = "application/vnd.oci.image.index.v1+json"
	mediaOCIManifest   = "application/vnd.oci.image.manifest.v1+json"
	mediaDockerList    = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerImage   = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

var manifestAccept = strings.Join([]string{mediaOCIIndex, mediaOCIManifest, mediaDockerList, mediaDockerImage}, ", ")

// maxManifest bounds a manifest's size, as Distribution does (4 MiB).
const maxManifest = 4 << 20

// probeDigest names a manifest no registry holds. Asking the connected registry for it by digest, which it
// cannot answer from its cache, makes it ask the parent, and brings back the parent's verdict on the repository:
// MANIFEST_UNKNOWN when the parent serves it to the sync token, NAME_UNKNOWN when it has no such repository,
// UNAUTHORIZED or DENIED outside the token's scope, and an error when the parent cannot be reached. Every other
// request falls back on the cache when the parent fails, so only this one tells an unchanged tag from a parent that
// is down.
var probeDigest = digest.FromString("connected-registry sync probe: this manifest does not exist")

// APIError is an error answer of the registry API.
type APIError struct {
	// Status is the HTTP status; Code and Message the first error of the body, if any.
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	s := strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)
	if e.Code != "" {
		s += ": " + strings.TrimSpace(e.Code+" "+e.Message)
	}
	return s
}

// registry is a client of the connected registry's API. With credentials, it authenticates as the registry asks:
// Basic (registry.clientAuthSecret's htpasswd) or bearer tokens from its token server (clientTokens).
type registry struct {
	base  *url.URL
	http  *http.Client
	creds *registryapi.Credentials
}

func newRegistry(base *url.URL, client *http.Client, username, password string) *registry {
	return &registry{base: base, http: client, creds: &registryapi.Credentials{Client: client, Username: username, Password: password}}
}

func (r *registry) url(repo, path string) string {
	u := *r.base
	u.Path = "/v2/" + repo + "/" + path
	return u.String()
}

// do sends a request about repo (none for /v2/), with the credentials it needs.
func (r *registry) do(ctx context.Context, repo, method, u string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if r.creds == nil {
		return r.http.Do(req)
	}
	scope := ""
	if repo != "" {
		scope = "repository:" + repo + ":pull"
	}
	return r.creds.Do(req, scope)
}

// apiError reads an error answer.
func apiError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Status: resp.StatusCode}
	if msg := registryapi.ErrorMessage(body); msg != "" {
		e.Code, e.Message, _ = strings.Cut(msg, " ")
	}
	return e
}

// probe asks for probeDigest in repo and returns nil when the parent serves the repository to the sync token.
func (r *registry) probe(ctx context.Context, repo string) error {
	resp, err := r.do(ctx, repo, http.MethodGet, r.url(repo, "manifests/"+probeDigest.String()), http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	err = apiError(resp)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "MANIFEST_UNKNOWN" {
		return nil
	}
	return err
}

// tags lists the repository's tags, following the Link header of paged answers.
func (r *registry) tags(ctx context.Context, repo string) ([]string, error) {
	next := r.url(repo, "tags/list") + "?n=1000"
	var all []string
	for pages := 0; next != ""; pages++ {
		if pages > 10000 {
			return nil, fmt.Errorf("listing the tags of %s: more than 10000 pages", repo)
		}
		resp, err := r.do(ctx, repo, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		if resp.StatusCode != http.StatusOK {
			err = apiError(resp)
		} else {
			err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page)
		}
		link := resp.Header.Get("Link")
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, page.Tags...)
		next = ""
		if link != "" {
			if u, ok := nextLink(r.base, link); ok {
				next = u
			}
		}
	}
	return all, nil
}

// nextLink reads the rel="next" URL of a Link header, relative to base.
func nextLink(base *url.URL, header string) (string, bool) {
	for _, part := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		ref, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
		if err != nil {
			return "", false
		}
		return base.ResolveReference(ref).String(), true
	}
	return "", false
}

// descriptor is a content descriptor of a manifest.
type descriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Platform  *Platform `json:"platform,omitempty"`
	URLs      []string  `json:"urls,omitempty"`
}

// manifest is a fetched manifest: an index (Manifests) or an image manifest (Config and Layers).
type manifest struct {
	Digest    digest.Digest `json:"-"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"-"`
	Manifests []descriptor  `json:"manifests"`
	Config    *descriptor   `json:"config"`
	Layers    []descriptor  `json:"layers"`
}

func (m *manifest) isIndex() bool {
	return m.MediaType == mediaOCIIndex || m.MediaType == mediaDockerList || (m.Config == nil && m.Manifests != nil)
}

// getManifest fetches repo's manifest ref (a tag or a digest). With ifNot (a digest), an unchanged tag answers
// nil, nil: the registry asked the parent for the tag and found it still names ifNot.
func (r *registry) getManifest(ctx context.Context, repo, ref string, ifNot digest.Digest) (*manifest, error) {
	h := http.Header{"Accept": {manifestAccept}}
	if ifNot != "" {
		h.Set("If-None-Match", `"`+ifNot.String()+`"`)
	}
	resp, err := r.do(ctx, repo, http.MethodGet, r.url(repo, "manifests/"+ref), h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && ifNot != "" {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", ref, err)
	}
	if len(body) > maxManifest {
		return nil, fmt.Errorf("manifest %s is larger than 4 MiB", ref)
	}
	d := digest.FromBytes(body)
	if want, err := digest.Parse(ref); err == nil && want != d {
		return nil, fmt.Errorf("manifest %s came back with digest %s", ref, d)
	}
	if hdr := resp.Header.Get("Docker-Content-Digest"); hdr != "" && hdr != d.String() {
		return nil, fmt.Errorf("manifest %s came back with digest %s, but the registry says %s", ref, d, hdr)
	}
	m := &manifest{Digest: d, Size: int64(len(body))}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("manifest %s is not JSON: %w", ref, err)
	}
	if m.MediaType == "" {
		m.MediaType, _, _ = strings.Cut(resp.Header.Get("Content-Type"), ";")
	}
	if !m.isIndex() && m.Config == nil {
		return nil, fmt.Errorf("manifest %s has media type %q, which is neither an index nor an image manifest", ref, m.MediaType)
	}
	return m, nil
}

// blobResult is how the registry answered a blob.
type blobResult int

const (
	// blobCached: the registry had it (304 to If-None-Match: no bytes moved).
	blobCached blobResult = iota
	// blobFetched: the registry lacked it and fetched it from the parent while sending it.
	blobFetched
)

// fetchBlob makes the registry hold the blob d of repo. It asks with If-None-Match: a blob the registry holds is
// answered 304 from its cache, without its bytes; one it lacks it fetches from the parent and stores as it streams
// it, and those bytes are read (through body, which may limit the rate) and checked against d, then discarded.
// HEAD would make the registry fetch and store the blob too (Distribution v3.1.2's proxy copies the whole blob
// before answering a HEAD), but it answers only once the blob is stored: no progress, no rate limit, no way to
// stop it cleanly.
func (r *registry) fetchBlob(ctx context.Context, repo string, d digest.Digest, size int64, body func(io.Reader) io.Reader) (blobResult, int64, error) {
	resp, err := r.do(ctx, repo, http.MethodGet, r.url(repo, "blobs/"+d.String()), http.Header{"If-None-Match": {`"` + d.String() + `"`}})
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return blobCached, 0, nil
	case http.StatusOK:
	default:
		return 0, 0, apiError(resp)
	}
	v := d.Verifier()
	n, err := io.Copy(v, body(resp.Body))
	if err != nil {
		return blobFetched, n, fmt.Errorf("reading blob %s after %d of %d bytes: %w", d, n, size, err)
	}
	if n != size || !v.Verified() {
		return blobFetched, n, fmt.Errorf("blob %s came back with %d bytes that do not match its digest (want %d)", d, n, size)
	}
	return blobFetched, n, nil
}
