package trust_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/trust"
)

func TestValidHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, host string
		ok         bool
	}{
		{"an IPv4 address with a port should pass", "10.96.0.50:443", true},
		{"a bracketed IPv6 address with a port should pass", "[fd00::50]:443", true},
		{"a DNS name with a port should pass", "registry.example.com:5000", true},
		{"a path that climbs out of certs.d should fail", "../../escaped:443", false},
		{"a host with a slash should fail", "10.96.0.50/x:443", false},
		{"a host with a backslash should fail", `a\b:443`, false},
		{"a host without a port should fail", "10.96.0.50", false},
		{"an empty host should fail", ":443", false},
		{"a port out of range should fail", "10.96.0.50:70000", false},
		{"a port with a leading zero should fail", "10.96.0.50:0443", false},
		{"an IPv6 zone should fail", "[fe80::1%eth0]:443", false},
		{"a label with an underscore should fail", "my_host:443", false},
		{"dot-dot alone should fail", "..:443", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := trust.ValidHost(tc.host)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, trust.ErrBadHost)
		})
	}
}

func TestEntryRefusesATraversingHost(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, _ := newEntry(t, c)
	e.Host = "../../escaped:443"
	_, err := e.Install(newCA(t, c.t, "CA one"))
	require.ErrorIs(t, err, trust.ErrBadHost)
	assert.NoDirExists(t, filepath.Join(e.Dir, "..", "..", "escaped:443"))
}

func TestEntryRefusesASymlinkedHostDirectory(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, dir := newEntry(t, c)
	// Someone with node root pointed the registry's entry at docker.io's.
	target := filepath.Join(e.Dir, "docker.io")
	require.NoError(t, os.Mkdir(target, 0o755))
	require.NoError(t, os.Symlink(target, dir))
	_, err := e.Install(newCA(t, c.t, "CA one"))
	require.ErrorIs(t, err, trust.ErrSymlink)
	assert.Contains(t, err.Error(), "remove the link, or set trustDistribution.enabled=false")
	entries, err := os.ReadDir(target)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing is written through the link")

	removed, left, err := e.Remove()
	require.NoError(t, err)
	assert.Empty(t, removed)
	assert.Equal(t, []string{dir + " (a symbolic link, not written by connected-registry)"}, left)
	_, err = os.Lstat(dir)
	require.NoError(t, err, "the link is not removed either")
}

// A release installed at .50, then upgraded to .61 (refused): its last values name .61, and trust-remove must
// still remove the .50 entry its agent wrote, and leave another release's entry.
func TestRemoveTakesEveryEntryOfTheOwnerWhateverTheHost(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, dir := newEntry(t, c)
	ca := newCA(t, c.t, "CA one")
	_, err := e.Install(ca)
	require.NoError(t, err)
	other := *e
	other.Host, other.Owner = "10.96.0.70:443", "other/release"
	_, err = other.Install(ca)
	require.NoError(t, err)

	hosts, err := trust.OwnedHosts(e.Dir, "ns/cr")
	require.NoError(t, err)
	assert.Equal(t, []string{host}, hosts)

	last := *e
	last.Host = "10.96.0.61:443"
	msg, err := trust.Remove(&last, "node-1")
	require.NoError(t, err)
	assert.Contains(t, msg, "node node-1: removed 4 paths of ns/cr under /etc/containerd/certs.d/10.96.0.50:443")
	assert.NoDirExists(t, dir)
	assert.DirExists(t, filepath.Join(e.Dir, "10.96.0.70:443"), "another release's entry stays")

	// A release that wrote nothing (its address was another release's): nothing of its own is success.
	msg, err = trust.Remove(&trust.Entry{Dir: e.Dir, HostDir: e.HostDir, Host: "10.96.0.70:443", Owner: "ns/failed"}, "node-1")
	require.NoError(t, err)
	assert.Contains(t, msg, "nothing of ns/failed")
	assert.Contains(t, msg, "left /etc/containerd/certs.d/10.96.0.70:443 (belongs to other/release)")
}
