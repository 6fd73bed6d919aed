package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/connected-registry/connected-registry/internal/testing/acrparent"
)

// tokenResult is the token-parent section: cold pulls through the connected registry (the chart's defaults)
// from the Basic-auth parent and from the ACR-like parent, run by run.
type tokenResult struct {
	image        *testImage
	basic, token *series
	// tokens and storageGets are the token requests and the storage host's blob downloads of each cold pull
	// from the token parent.
	tokens, storageGets []int
	// blobs is how many blobs (configs and layers) a pull of the image fetches.
	blobs int
}

// runToken pulls each image cold through a connected registry of the chart's defaults, from the Basic-auth
// parent and from the ACR-like parent (token auth with the realm on its host, blobs redirected to a storage
// host), taking turns within each run, and counts the token requests and storage downloads of each pull.
func (b *bench) runToken(ctx context.Context) error {
	par, err := acrparent.Start(ctx, acrparent.Options{Bin: b.e.registryBin, Dir: filepath.Join(b.o.Dir, "acrparent"), CA: b.e.ca,
		SyncToken: acrparent.Account{Name: parentUser, Password: parentPassword}})
	if err != nil {
		return err
	}
	defer par.Stop()
	v := b.o.Variants[len(b.o.Variants)-1]
	var rows []*tokenResult
	for _, img := range b.images {
		var t remote.Taggable = img.image
		if img.index != nil {
			t = img.index
		}
		if err := par.Push(ctx, img.repo+":"+img.tag, t); err != nil {
			return err
		}
		blobs, err := contentBlobs(img)
		if err != nil {
			return err
		}
		rows = append(rows, &tokenResult{image: img, blobs: blobs,
			basic: &series{image: img, path: "cold, Basic-auth parent", variant: v.name},
			token: &series{image: img, path: "cold, token parent", variant: v.name}})
	}
	b.res.token = rows
	dir := filepath.Join(b.o.Dir, "cr")
	for run := 0; run < b.o.Runs; run++ {
		b.e.logf("token parent: run %d of %d", run+1, b.o.Runs)
		for _, r := range rows {
			if err := b.coldFrom(ctx, v, dir, b.e.parentHost, r.image, r.basic); err != nil {
				return err
			}
			mark := par.Log()
			if err := b.coldFrom(ctx, v, dir, par.Host, r.image, r.token); err != nil {
				return err
			}
			pulled := par.Log().Since(mark)
			r.tokens = append(r.tokens, len(pulled.Token))
			r.storageGets = append(r.storageGets, pulled.BlobGets())
			if n := pulled.StorageAuthorizations(); n > 0 {
				r.token.errs = append(r.token.errs, fmt.Errorf("the storage host got the registry's Authorization %d times", n))
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// coldFrom starts a connected registry of v with an empty cache for the parent at parentHost, pulls img cold
// into s, and removes the registry.
func (b *bench) coldFrom(ctx context.Context, v variant, dir, parentHost string, img *testImage, s *series) error {
	cr, err := b.e.startConnectedVia(ctx, v, dir, parentHost)
	if err != nil {
		return err
	}
	defer cr.remove()
	s.add(b.pullOnce(ctx, cr.host, false, img, img.byTag(), b.o.PullTimeout))
	if err := cr.waitStored(img, time.Minute); err != nil {
		s.errs = append(s.errs, err)
	}
	return nil
}

// reportToken writes the token-parent section.
func (b *bench) reportToken(p func(format string, args ...any)) {
	p("## Parents with token auth\n\n")
	p("ACR, Docker Hub, GHCR and Harbor answer with a Bearer challenge whose realm is on their own host, give scoped ")
	p("tokens that expire, and send blobs from a storage host. The same cold pulls through a connected registry of the ")
	p("chart's defaults (the parent gate rewrites the realm to itself and keeps each token until shortly before it ")
	p("expires), from the Basic-auth parent and from the ACR-like test parent (`internal/testing/acrparent`: Distribution ")
	p("v3.1.2 with `auth.token`, a token issuer, and a storage host of its own with signed URLs), taking turns in each run.\n\n")
	p("| image | from the Basic-auth parent | from the token parent | ratio | worst run | goal | token requests per pull | storage downloads per pull |\n")
	p("|---|---|---|---|---|---|---|---|\n")
	for _, r := range b.res.token {
		ratio, worst, verdict := "–", "–", ""
		if rs := ratios(r.token, r.basic); rs != nil {
			ratio, worst = fmt.Sprintf("%.2f", quantile(rs, 0.5)), fmt.Sprintf("%.2f", quantile(rs, 0))
			verdict = "≥ 0.95: **not met**"
			if quantile(rs, 0.5) >= 0.95 {
				verdict = "≥ 0.95: **met**"
			}
		}
		if errs := append(append([]error{}, r.basic.errs...), r.token.errs...); len(errs) > 0 {
			verdict += " errors: " + errSummary(errs)
		}
		p("| %s | %s | %s | %s | %s | %s | %s (goal: 1, one repository) | %s for %d blobs |\n", r.image.label,
			ms(quantile(r.basic.times, 0.5)), ms(quantile(r.token.times, 0.5)), ratio, worst, verdict,
			intRange(r.tokens), intRange(r.storageGets), r.blobs)
	}
	p("\nTimes are medians; the ratio is Basic-auth time over token time per run (1.00: the token flow costs nothing).\n\n")
}

// contentBlobs counts the configs and layers of img: what a pull fetches as blobs, not as manifests.
func contentBlobs(img *testImage) (int, error) {
	count := func(i v1.Image) (int, error) {
		m, err := i.Manifest()
		if err != nil {
			return 0, err
		}
		return 1 + len(m.Layers), nil
	}
	if img.index == nil {
		return count(img.image)
	}
	im, err := img.index.IndexManifest()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range im.Manifests {
		i, err := img.index.Image(d.Digest)
		if err != nil {
			return 0, err
		}
		c, err := count(i)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// intRange prints the smallest and largest of ns, or the one value they all have.
func intRange(ns []int) string {
	if len(ns) == 0 {
		return "–"
	}
	lo, hi := ns[0], ns[0]
	for _, n := range ns {
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}
