package presync

import (
	"regexp"
	"slices"
	"sort"

	"github.com/Masterminds/semver/v3"
)

// Platform is a platform of an index's manifest.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Selection is a checked item of sync.repositories, ready to select tags and platforms.
type Selection struct {
	Repository
	regex     *regexp.Regexp
	semver    *semver.Constraints
	platforms []Platform
}

// Select returns the tags of available (the parent's tags) that the selection holds, sorted, and the exact tags
// it names that the parent lacks.
func (s Selection) Select(available []string) (selected, missing []string) {
	have := map[string]bool{}
	for _, t := range available {
		have[t] = true
	}
	if len(s.Tags) > 0 {
		seen := map[string]bool{}
		for _, t := range s.Tags {
			if seen[t] {
				continue
			}
			seen[t] = true
			if have[t] {
				selected = append(selected, t)
			} else {
				missing = append(missing, t)
			}
		}
		sort.Strings(selected)
		return selected, missing
	}
	type version struct {
		tag string
		v   *semver.Version
	}
	var candidates []version
	for _, t := range available {
		var v *semver.Version
		if s.semver != nil || s.Latest > 0 {
			parsed, err := semver.NewVersion(t)
			if err != nil {
				continue // not a version: neither a semver range nor latest can hold it
			}
			v = parsed
		}
		switch {
		case s.regex != nil && !s.regex.MatchString(t):
			continue
		case s.semver != nil && !s.semver.Check(v):
			continue
		case s.Latest > 0 && s.regex == nil && s.semver == nil && v.Prerelease() != "":
			// latest alone ranks releases; a tagRegex or semver range it narrows says which prereleases count.
			continue
		}
		candidates = append(candidates, version{t, v})
	}
	if s.Latest > 0 {
		sort.SliceStable(candidates, func(i, j int) bool {
			if c := candidates[i].v.Compare(candidates[j].v); c != 0 {
				return c > 0
			}
			return candidates[i].tag < candidates[j].tag
		})
		candidates = candidates[:min(s.Latest, len(candidates))]
	}
	for _, c := range candidates {
		selected = append(selected, c.tag)
	}
	sort.Strings(selected)
	return selected, nil
}

// allPlatforms tells whether the selection holds every platform of an index.
func (s Selection) allPlatforms() bool { return len(s.platforms) == 0 }

// wantsPlatform tells whether the selection holds an index's manifest of platform p (nil: the index names none).
func (s Selection) wantsPlatform(p *Platform) bool {
	if s.allPlatforms() {
		return true
	}
	if p == nil {
		return false
	}
	return slices.ContainsFunc(s.platforms, func(w Platform) bool {
		return w.OS == p.OS && w.Architecture == p.Architecture && (w.Variant == "" || w.Variant == p.Variant)
	})
}
