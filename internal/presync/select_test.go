package presync_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/presync"
)

func TestSelect(t *testing.T) {
	t.Parallel()
	available := []string{"latest", "1.0.0", "1.1.0", "1.1.1", "1.2.0-rc1", "1.2.0", "2.0.0", "v3.0.0", "release-7", "release-12", "nightly"}
	tests := []struct {
		name          string
		repo          string
		want, missing []string
	}{
		{"exact tags should select those the parent has and name the missing ones",
			`[{"name":"app","tags":["latest","1.0.0","nope","latest"]}]`, []string{"1.0.0", "latest"}, []string{"nope"}},
		{"a regex should match anywhere in a tag unless anchored",
			`[{"name":"app","tagRegex":"release-[0-9]+"}]`, []string{"release-12", "release-7"}, nil},
		{"an anchored regex should match whole tags only",
			`[{"name":"app","tagRegex":"^1\\.1\\..*$"}]`, []string{"1.1.0", "1.1.1"}, nil},
		{"a semver range should select the versions within it, v prefix included",
			`[{"name":"app","semver":">=1.1 <3.1"}]`, []string{"1.1.0", "1.1.1", "1.2.0", "2.0.0", "v3.0.0"}, nil},
		{"a tilde range should select the patch releases",
			`[{"name":"app","semver":"~1.1"}]`, []string{"1.1.0", "1.1.1"}, nil},
		{"latest alone should select the highest releases and skip prereleases",
			`[{"name":"app","latest":2}]`, []string{"2.0.0", "v3.0.0"}, nil},
		{"latest should narrow a semver range to its highest versions",
			`[{"name":"app","semver":"^1","latest":2}]`, []string{"1.1.1", "1.2.0"}, nil},
		{"latest larger than the versions should select them all",
			`[{"name":"app","semver":"<1.1","latest":5}]`, []string{"1.0.0"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sels, err := presync.ParseRepositories("sync.repositories", tc.repo)
			require.NoError(t, err)
			require.Len(t, sels, 1)
			got, missing := sels[0].Select(available)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.missing, missing)
		})
	}
}
