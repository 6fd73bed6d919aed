package evict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// manifestAccept is every manifest media type the registry may hold.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// maxManifestBytes bounds a manifest read, as Distribution bounds a manifest put (4 MiB).
const maxManifestBytes = 4 << 20

// Blob is a blob a manifest names: its config or a layer.
type Blob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Manifest is a manifest the registry holds.
type Manifest struct {
	Repository string
	Digest     string
	// Size is the manifest's own size: it is stored as a blob too.
	Size int64
	// Tags are the repository's tags that point at it.
	Tags []string
	// Children are the digests of the manifests an index names, in the same repository.
	Children []string
	// Blobs are the config and layers of an image manifest.
	Blobs []Blob
}

// Ref is repository@digest.
func (m *Manifest) Ref() string { return m.Repository + "@" + m.Digest }

// Inventory is what the registry holds: its manifests, by repository@digest.
type Inventory struct {
	Manifests map[string]*Manifest
}

// Bytes is the size of what the manifests hold: each distinct blob (and manifest) once, as the registry stores
// it once whatever the number of repositories naming it.
func (inv *Inventory) Bytes() int64 { return bytesOf(inv.Manifests, nil) }

// bytesOf sums the distinct blobs and manifests of ms, leaving out the refs in gone.
func bytesOf(ms map[string]*Manifest, gone map[string]bool) int64 {
	seen := map[string]bool{}
	var n int64
	add := func(digest string, size int64) {
		if !seen[digest] {
			seen[digest] = true
			n += size
		}
	}
	for ref, m := range ms {
		if gone[ref] {
			continue
		}
		add(m.Digest, m.Size)
		for _, b := range m.Blobs {
			add(b.Digest, b.Size)
		}
	}
	return n
}

// Registry is the registry API of the Job's own Distribution: plain HTTP on the pod's loopback, no credentials.
type Registry struct {
	// URL is http://127.0.0.1:<port>.
	URL *url.URL
	// Client is the HTTP client; nil is http.DefaultClient.
	Client *http.Client
}

func (r *Registry) client() *http.Client {
	if r.Client == nil {
		return http.DefaultClient
	}
	return r.Client
}

// ErrNotFound is the registry's 404 answer.
var ErrNotFound = errors.New("not found")

func (r *Registry) do(ctx context.Context, method, path, query string, accept string) (*http.Response, error) {
	u := *r.URL
	u.Path, u.RawQuery = path, query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := r.client().Do(req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrNotFound)
	case resp.StatusCode >= 300:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

func (r *Registry) getJSON(ctx context.Context, path, query string, v any) (http.Header, error) {
	resp, err := r.do(ctx, http.MethodGet, path, query, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxManifestBytes)).Decode(v); err != nil {
		return nil, fmt.Errorf("reading GET %s: %w", path, err)
	}
	return resp.Header, nil
}

// Repositories lists the catalog, page by page.
func (r *Registry) Repositories(ctx context.Context) ([]string, error) {
	var all []string
	last := ""
	for {
		var page struct {
			Repositories []string `json:"repositories"`
		}
		q := url.Values{"n": {"1000"}}
		if last != "" {
			q.Set("last", last)
		}
		if _, err := r.getJSON(ctx, "/v2/_catalog", q.Encode(), &page); err != nil {
			return nil, fmt.Errorf("listing the repositories: %w", err)
		}
		all = append(all, page.Repositories...)
		if len(page.Repositories) < 1000 {
			return all, nil
		}
		last = page.Repositories[len(page.Repositories)-1]
	}
}

// Tags lists a repository's tags; a repository without any has none.
func (r *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	var tl struct {
		Tags []string `json:"tags"`
	}
	if _, err := r.getJSON(ctx, "/v2/"+repo+"/tags/list", "", &tl); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	return tl.Tags, nil
}

// manifestBody is what the inventory reads of a manifest of any kind.
type manifestBody struct {
	Config    *Blob  `json:"config"`
	Layers    []Blob `json:"layers"`
	Manifests []Blob `json:"manifests"`
}

// Manifest reads repo's manifest by tag or digest.
func (r *Registry) Manifest(ctx context.Context, repo, reference string) (*Manifest, error) {
	resp, err := r.do(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+reference, "", manifestAccept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the manifest %s:%s: %w", repo, reference, err)
	}
	var body manifestBody
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, fmt.Errorf("the manifest %s:%s is not JSON: %w", repo, reference, err)
	}
	m := &Manifest{Repository: repo, Digest: resp.Header.Get("Docker-Content-Digest"), Size: int64(len(data))}
	if m.Digest == "" {
		return nil, fmt.Errorf("the registry named no Docker-Content-Digest for %s:%s", repo, reference)
	}
	if body.Config != nil {
		m.Blobs = append(m.Blobs, *body.Config)
	}
	m.Blobs = append(m.Blobs, body.Layers...)
	for _, c := range body.Manifests {
		m.Children = append(m.Children, c.Digest)
	}
	return m, nil
}

// DeleteManifest deletes repo@digest and every tag pointing at it.
func (r *Registry) DeleteManifest(ctx context.Context, repo, digest string) error {
	resp, err := r.do(ctx, http.MethodDelete, "/v2/"+repo+"/manifests/"+digest, "", "")
	if err != nil {
		return fmt.Errorf("deleting %s@%s: %w", repo, digest, err)
	}
	resp.Body.Close()
	return nil
}

// Walk reads the inventory: every repository's tags, the manifests they point at and every manifest those name,
// and the manifests of extra (repository@digest refs, such as recorded pulls by digest) that the registry still
// holds. A manifest that vanished meanwhile is left out.
func (r *Registry) Walk(ctx context.Context, extra []string) (*Inventory, error) {
	inv := &Inventory{Manifests: map[string]*Manifest{}}
	repos, err := r.Repositories(ctx)
	if err != nil {
		return nil, err
	}
	var visit func(repo, reference, tag string) error
	visit = func(repo, reference, tag string) error {
		if strings.HasPrefix(reference, "sha256:") {
			if m, ok := inv.Manifests[repo+"@"+reference]; ok {
				if tag != "" {
					m.Tags = append(m.Tags, tag)
				}
				return nil
			}
		}
		m, err := r.Manifest(ctx, repo, reference)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if old, ok := inv.Manifests[m.Ref()]; ok {
			m = old
		} else {
			inv.Manifests[m.Ref()] = m
		}
		if tag != "" {
			m.Tags = append(m.Tags, tag)
		}
		for _, c := range m.Children {
			if err := visit(repo, c, ""); err != nil {
				return err
			}
		}
		return nil
	}
	for _, repo := range repos {
		tags, err := r.Tags(ctx, repo)
		if err != nil {
			return nil, err
		}
		for _, tag := range tags {
			if err := visit(repo, tag, tag); err != nil {
				return nil, err
			}
		}
	}
	sort.Strings(extra)
	for _, ref := range extra {
		repo, digest, ok := strings.Cut(ref, "@")
		if !ok {
			continue
		}
		if err := visit(repo, digest, ""); err != nil {
			return nil, err
		}
	}
	for _, m := range inv.Manifests {
		sort.Strings(m.Tags)
	}
	return inv, nil
}
