package evict

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/presync"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// image adds an image manifest of repo with the given blobs (digest → size) to inv.
func image(inv *Inventory, repo, digest string, tags []string, blobs ...Blob) {
	inv.Manifests[repo+"@"+digest] = &Manifest{Repository: repo, Digest: digest, Size: 1, Tags: tags, Blobs: blobs}
}

func refsOf(imgs []Image) []string {
	var out []string
	for _, i := range imgs {
		out = append(out, i.Ref())
	}
	return out
}

func TestMakePlan(t *testing.T) {
	t.Parallel()
	keepNothing := func(string, string) bool { return false }
	tests := []struct {
		name       string
		build      func(inv *Inventory)
		pulls      map[string]time.Time
		keep       Keep
		maxSize    int64
		wantEvict  []string
		wantDelete []string
		wantAfter  int64
	}{
		{
			name: "the least recently pulled image should go first, and only as many as needed",
			build: func(inv *Inventory) {
				image(inv, "a", "sha256:a", []string{"1"}, Blob{"sha256:la", 100})
				image(inv, "b", "sha256:b", []string{"1"}, Blob{"sha256:lb", 100})
				image(inv, "c", "sha256:c", []string{"1"}, Blob{"sha256:lc", 100})
			},
			pulls:      map[string]time.Time{"a:1": t0.Add(3 * time.Hour), "b@sha256:b": t0.Add(time.Hour), "c:1": t0.Add(2 * time.Hour)},
			keep:       keepNothing,
			maxSize:    250,
			wantEvict:  []string{"b@sha256:b"},
			wantDelete: []string{"b@sha256:b"},
			wantAfter:  202,
		},
		{
			name: "an image pre-sync keeps should never be evicted, even when it is the oldest",
			build: func(inv *Inventory) {
				image(inv, "synced", "sha256:s", []string{"v1"}, Blob{"sha256:ls", 100})
				image(inv, "b", "sha256:b", []string{"1"}, Blob{"sha256:lb", 100})
			},
			pulls:      map[string]time.Time{"synced:v1": t0, "b:1": t0.Add(time.Hour)},
			keep:       func(repo, tag string) bool { return repo == "synced" && tag == "v1" },
			maxSize:    50,
			wantEvict:  []string{"b@sha256:b"},
			wantDelete: []string{"b@sha256:b"},
			wantAfter:  101,
		},
		{
			name: "a layer shared with a remaining image should not count as freed",
			build: func(inv *Inventory) {
				image(inv, "old", "sha256:o", []string{"1"}, Blob{"sha256:shared", 100}, Blob{"sha256:lo", 10})
				image(inv, "new", "sha256:n", []string{"1"}, Blob{"sha256:shared", 100}, Blob{"sha256:ln", 10})
				image(inv, "mid", "sha256:m", []string{"1"}, Blob{"sha256:lm", 50})
			},
			pulls: map[string]time.Time{"old:1": t0, "mid:1": t0.Add(time.Hour), "new:1": t0.Add(2 * time.Hour)},
			keep:  keepNothing,
			// 173 held; evicting old frees 11 only (the shared layer stays with new), so mid goes too.
			maxSize:    120,
			wantEvict:  []string{"old@sha256:o", "mid@sha256:m"},
			wantDelete: []string{"mid@sha256:m", "old@sha256:o"},
			wantAfter:  111,
		},
		{
			name: "an index should be evicted with its platform manifests, except one another index still names",
			build: func(inv *Inventory) {
				image(inv, "r", "sha256:amd", nil, Blob{"sha256:l1", 100})
				image(inv, "r", "sha256:arm", nil, Blob{"sha256:l2", 100})
				inv.Manifests["r@sha256:i1"] = &Manifest{Repository: "r", Digest: "sha256:i1", Size: 1, Tags: []string{"1"}, Children: []string{"sha256:amd", "sha256:arm"}}
				inv.Manifests["r@sha256:i2"] = &Manifest{Repository: "r", Digest: "sha256:i2", Size: 1, Tags: []string{"2"}, Children: []string{"sha256:amd"}}
			},
			pulls:      map[string]time.Time{"r:1": t0, "r:2": t0.Add(time.Hour)},
			keep:       keepNothing,
			maxSize:    150,
			wantEvict:  []string{"r@sha256:i1"},
			wantDelete: []string{"r@sha256:arm", "r@sha256:i1"},
			wantAfter:  102,
		},
		{
			name: "a cache within its bound should lose nothing",
			build: func(inv *Inventory) {
				image(inv, "a", "sha256:a", []string{"1"}, Blob{"sha256:la", 100})
			},
			keep:      keepNothing,
			maxSize:   1000,
			wantAfter: 101,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := &Inventory{Manifests: map[string]*Manifest{}}
			tc.build(inv)
			p := MakePlan(inv, &Pulls{Since: t0.Add(-time.Hour), Last: tc.pulls}, tc.keep, tc.maxSize)
			require.Equal(t, tc.wantEvict, refsOf(p.Evict))
			require.Equal(t, tc.wantDelete, p.Delete)
			require.Equal(t, tc.wantAfter, p.After)
		})
	}
}

func TestMakePlanReportsWhatPreSyncKeepsBeyondTheBound(t *testing.T) {
	t.Parallel()
	inv := &Inventory{Manifests: map[string]*Manifest{}}
	image(inv, "synced", "sha256:s", []string{"v1"}, Blob{"sha256:ls", 500})
	sels, err := presync.ParseRepositories("sync.repositories", `[{"name":"synced","tags":["v1"]}]`)
	require.NoError(t, err)
	keep := KeepSynced(sels, func(string) []string { return []string{"v1", "v0"} })
	p := MakePlan(inv, &Pulls{}, keep, 100)
	require.Empty(t, p.Evict)
	require.Equal(t, 1, p.Kept)
	require.Equal(t, int64(501), p.KeptBytes)
	require.Equal(t, int64(501), p.After)
}
