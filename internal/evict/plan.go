package evict

import (
	"sort"
	"time"

	"github.com/connected-registry/connected-registry/internal/presync"
)

// Image is what eviction removes or keeps as one: a root manifest (one no other manifest of its repository
// names) and the manifests it names.
type Image struct {
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	Tags       []string `json:"tags,omitempty"`
	// LastPull is the last recorded pull of the image, its tags or its manifests.
	LastPull time.Time `json:"lastPull"`
	// Manifests are the refs (repository@digest) of the root and the manifests it names.
	Manifests []string `json:"-"`
}

// Ref is repository@digest of the root manifest.
func (i Image) Ref() string { return i.Repository + "@" + i.Digest }

// Plan is what one run evicts.
type Plan struct {
	// Before is the size of the cache's content, After what is left once Evict is gone and collected.
	Before, After int64
	// MaxSize is the bound the plan aims at.
	MaxSize int64
	// Evict are the images to evict, least recently pulled first.
	Evict []Image
	// Delete are the manifests to delete: those of Evict that no image left names.
	Delete []string
	// Kept counts the images pre-sync keeps, KeptBytes their size.
	Kept      int
	KeptBytes int64
	// Images counts every image.
	Images int
}

// Keep says whether pre-sync keeps a repository's tag.
type Keep func(repo, tag string) bool

// KeepSynced keeps every tag that one of the pre-sync selections would pick among the tags the registry holds.
func KeepSynced(selections []presync.Selection, tags func(repo string) []string) Keep {
	kept := map[string]map[string]bool{}
	for _, s := range selections {
		selected, _ := s.Select(tags(s.Name))
		if kept[s.Name] == nil {
			kept[s.Name] = map[string]bool{}
		}
		for _, t := range selected {
			kept[s.Name][t] = true
		}
	}
	return func(repo, tag string) bool { return kept[repo][tag] }
}

// Images groups the inventory's manifests into images: each root with the manifests it names.
func (inv *Inventory) Images(pulls *Pulls) []Image {
	named := map[string]bool{}
	for _, m := range inv.Manifests {
		for _, c := range m.Children {
			named[m.Repository+"@"+c] = true
		}
	}
	var images []Image
	for ref, m := range inv.Manifests {
		if named[ref] {
			continue
		}
		img := Image{Repository: m.Repository, Digest: m.Digest, Tags: m.Tags}
		seen := map[string]bool{}
		var walk func(ref string)
		walk = func(ref string) {
			cm, ok := inv.Manifests[ref]
			if !ok || seen[ref] {
				return
			}
			seen[ref] = true
			img.Manifests = append(img.Manifests, ref)
			img.LastPull = later(img.LastPull, pulls.last(ref))
			for _, c := range cm.Children {
				walk(cm.Repository + "@" + c)
			}
		}
		walk(ref)
		for _, t := range m.Tags {
			img.LastPull = later(img.LastPull, pulls.last(m.Repository+":"+t))
		}
		sort.Strings(img.Manifests)
		images = append(images, img)
	}
	sort.Slice(images, func(i, j int) bool {
		a, b := images[i], images[j]
		if !a.LastPull.Equal(b.LastPull) {
			return a.LastPull.Before(b.LastPull)
		}
		return a.Ref() < b.Ref()
	})
	return images
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// MakePlan picks the images to evict so that the cache holds at most maxSize: the least recently pulled first,
// never one with a tag keep keeps. A blob another image still names is not counted as freed, so the plan goes on
// until the bytes really freed are enough, or only kept images are left.
func MakePlan(inv *Inventory, pulls *Pulls, keep Keep, maxSize int64) *Plan {
	images := inv.Images(pulls)
	p := &Plan{Before: inv.Bytes(), MaxSize: maxSize, Images: len(images)}
	gone := map[string]bool{}
	var keptRefs = map[string]*Manifest{}
	var candidates []Image
	for _, img := range images {
		if kept(img, keep) {
			p.Kept++
			for _, ref := range img.Manifests {
				keptRefs[ref] = inv.Manifests[ref]
			}
			continue
		}
		candidates = append(candidates, img)
	}
	p.KeptBytes = bytesOf(keptRefs, nil)
	after := p.Before
	for _, img := range candidates {
		if after <= maxSize {
			break
		}
		p.Evict = append(p.Evict, img)
		for _, ref := range img.Manifests {
			gone[ref] = true
		}
		after = bytesOf(inv.Manifests, remaining(inv, images, gone))
	}
	p.After = after
	// A manifest two images name (an index and another naming the same platform image) stays while one of them
	// does.
	stays := map[string]bool{}
	evicted := map[string]bool{}
	for _, img := range p.Evict {
		evicted[img.Ref()] = true
	}
	for _, img := range images {
		if evicted[img.Ref()] {
			continue
		}
		for _, ref := range img.Manifests {
			stays[ref] = true
		}
	}
	for _, img := range p.Evict {
		for _, ref := range img.Manifests {
			if !stays[ref] {
				p.Delete = append(p.Delete, ref)
			}
		}
	}
	sort.Strings(p.Delete)
	return p
}

// remaining turns the manifests of evicted images into the set bytesOf leaves out, except those a remaining image
// still names.
func remaining(inv *Inventory, images []Image, gone map[string]bool) map[string]bool {
	out := map[string]bool{}
	for ref := range gone {
		out[ref] = true
	}
	for _, img := range images {
		if gone[img.Ref()] {
			continue
		}
		for _, ref := range img.Manifests {
			delete(out, ref)
		}
	}
	return out
}

func kept(img Image, keep Keep) bool {
	for _, t := range img.Tags {
		if keep(img.Repository, t) {
			return true
		}
	}
	return false
}
