package trust_test

import (
	"crypto/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connected-registry/connected-registry/internal/certs"
	"github.com/connected-registry/connected-registry/internal/trust"
)

const host = "10.96.0.50:443"

func TestDetect(t *testing.T) {
	const certsDir = "/etc/containerd/certs.d"
	for _, tc := range []struct {
		name    string
		config  string // "" writes no file
		k3s     string
		verdict trust.Verdict
		reason  string
	}{
		{
			name: "schema 2 with config_path",
			config: `version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`,
			verdict: trust.WillUse,
			reason:  `reads /etc/containerd/certs.d (config_path "/etc/containerd/certs.d")`,
		},
		{
			name: "schema 2 without config_path (containerd 1.x default)",
			config: `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
`,
			verdict: trust.WontUse,
			reason:  `sets no config_path in [plugins."io.containerd.grpc.v1.cri".registry]: containerd ignores certs.d; add config_path = "/etc/containerd/certs.d" there and restart containerd once`,
		},
		{
			name: "schema 2 with the deprecated mirrors",
			config: `version = 2
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["https://mirror.example"]
`,
			verdict: trust.WontUse,
			reason:  "(it uses the deprecated registry.mirrors/configs instead)",
		},
		{
			name: "schema 3 with a colon-separated list",
			config: `version = 3
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/docker/certs.d:/etc/containerd/certs.d/"
`,
			verdict: trust.WillUse,
			reason:  `config_path "/etc/docker/certs.d:/etc/containerd/certs.d/"`,
		},
		{
			name:    "schema 3 without config_path (containerd 2.x default)",
			config:  "version = 3\n",
			verdict: trust.WillUse,
			reason:  `config_path "/etc/containerd/certs.d:/etc/docker/certs.d"`,
		},
		{
			name: "schema 3 pointing elsewhere",
			config: `version = 3
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/var/lib/containerd/hosts"
`,
			verdict: trust.WontUse,
			reason:  `which does not hold /etc/containerd/certs.d: set trustDistribution.certsDir to one of those directories`,
		},
		{
			name:    "schema 1",
			config:  "[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n",
			verdict: trust.WontUse,
			reason:  "(schema 1) sets no config_path",
		},
		{
			name:    "no config file",
			verdict: trust.Unknown,
			reason:  "containerd 2.x reads /etc/containerd/certs.d by default, containerd 1.x reads no certs.d directory",
		},
		{
			name:    "not TOML",
			config:  "version = [",
			verdict: trust.Unknown,
			reason:  "is not valid TOML",
		},
		{
			name:    "k3s without an entry",
			config:  "version = 2\n",
			k3s:     "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.example\"]\n",
			verdict: trust.WontUse,
			reason:  `add configs."10.96.0.50:443".tls.ca_file: /etc/containerd/certs.d/10.96.0.50:443/ca.crt there and restart k3s/rke2 once`,
		},
		{
			name:    "k3s with an entry",
			k3s:     "configs:\n  \"10.96.0.50:443\":\n    tls:\n      ca_file: /etc/ssl/registry-ca.crt\n",
			verdict: trust.WillUse,
			reason:  "configures 10.96.0.50:443 with ca_file /etc/ssl/registry-ca.crt",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := trust.DetectOptions{ContainerdConfig: filepath.Join(dir, "config.toml"), HostCertsDir: certsDir, Host: host}
			if tc.config != "" {
				require.NoError(t, os.WriteFile(o.ContainerdConfig, []byte(tc.config), 0o644))
			}
			if tc.k3s != "" {
				o.RegistriesYAML = filepath.Join(dir, "registries.yaml")
				require.NoError(t, os.WriteFile(o.RegistriesYAML, []byte(tc.k3s), 0o644))
			} else {
				o.RegistriesYAML = filepath.Join(dir, "absent.yaml")
			}
			d := trust.Detect(o)
			assert.Equal(t, tc.verdict, d.Verdict, d.Reason)
			assert.Contains(t, d.Reason, tc.reason)
		})
	}
}

func TestDetectRefusesAHugeConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte("# "+strings.Repeat("x", 2<<20)+"\n"), 0o644))
	d := trust.Detect(trust.DetectOptions{ContainerdConfig: path, HostCertsDir: "/etc/containerd/certs.d", Host: host})
	assert.Equal(t, trust.Unknown, d.Verdict)
	assert.Contains(t, d.Reason, "larger than 1048576 bytes")
}

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func newCA(t *testing.T, now time.Time, name string) []byte {
	t.Helper()
	spec, err := certs.ParseKeySpec("ECDSA", 256)
	require.NoError(t, err)
	ca, err := certs.NewCA(rand.Reader, certs.Request{Key: spec, CommonName: name, Duration: 10 * 365 * 24 * time.Hour, IPs: []netip.Addr{netip.MustParseAddr("10.96.0.50")}}, now)
	require.NoError(t, err)
	return ca.CertPEM
}

func newEntry(t *testing.T, c *clock) (*trust.Entry, string) {
	dir := t.TempDir()
	return &trust.Entry{Dir: dir, HostDir: "/etc/containerd/certs.d", Host: host, Owner: "ns/cr",
		PreviousCAGrace: time.Hour, Now: c.Now}, filepath.Join(dir, host)
}

func TestEntryInstallIsIdempotentAndRemoveTakesOnlyItsOwn(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, dir := newEntry(t, c)
	ca := newCA(t, c.t, "CA one")

	// A foreign entry for another host next to ours stays untouched.
	foreign := filepath.Join(e.Dir, "docker.io", "hosts.toml")
	require.NoError(t, os.MkdirAll(filepath.Dir(foreign), 0o755))
	require.NoError(t, os.WriteFile(foreign, []byte("server = \"https://registry-1.docker.io\"\n"), 0o644))

	changed, err := e.Install(ca)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "hosts.toml")}, changed)
	assert.True(t, e.Installed(ca))
	got, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	assert.Equal(t, string(ca), string(got))
	hosts, err := os.ReadFile(filepath.Join(dir, "hosts.toml"))
	require.NoError(t, err)
	assert.Equal(t, `# Written by connected-registry (ns/cr); removed on helm uninstall. Do not edit.
server = "https://10.96.0.50:443"

[host."https://10.96.0.50:443"]
  capabilities = ["pull", "resolve"]
  ca = "/etc/containerd/certs.d/10.96.0.50:443/ca.crt"
`, string(hosts))

	// The same CA again changes nothing, not even a modification time.
	st, err := os.Stat(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	changed, err = e.Install(ca)
	require.NoError(t, err)
	assert.Empty(t, changed)
	st2, err := os.Stat(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	assert.Equal(t, st.ModTime(), st2.ModTime())

	// A file someone else dropped into our directory survives removal, and so does the directory.
	other := filepath.Join(dir, "client.cert")
	require.NoError(t, os.WriteFile(other, []byte("x"), 0o644))
	removed, left, err := e.Remove()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "hosts.toml"), filepath.Join(dir, trust.MarkerFile)}, removed)
	assert.Equal(t, []string{dir + " (holds files the agent did not write)"}, left)
	assert.FileExists(t, other)
	assert.FileExists(t, foreign)

	// Once the stranger is gone, install and remove leave certs.d exactly as before.
	require.NoError(t, os.Remove(other))
	require.NoError(t, os.Remove(dir))
	_, err = e.Install(ca)
	require.NoError(t, err)
	_, left, err = e.Remove()
	require.NoError(t, err)
	assert.Empty(t, left)
	assert.NoDirExists(t, dir)
	entries, err := os.ReadDir(e.Dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "docker.io", entries[0].Name())

	// Removing twice is fine.
	removed, left, err = e.Remove()
	require.NoError(t, err)
	assert.Empty(t, removed)
	assert.Empty(t, left)
}

func TestEntryRefusesForeignFilesAndOtherOwners(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, dir := newEntry(t, c)
	ca := newCA(t, c.t, "CA one")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte("server = \"https://elsewhere\"\n"), 0o644))
	_, err := e.Install(ca)
	require.ErrorIs(t, err, trust.ErrForeign)
	assert.Contains(t, err.Error(), "holds hosts.toml not written by connected-registry: another tool configures 10.96.0.50:443 on this node; remove its entry or set trustDistribution.enabled=false")
	removed, _, err := e.Remove()
	require.NoError(t, err)
	assert.Empty(t, removed, "no marker: nothing is ours")
	assert.FileExists(t, filepath.Join(dir, "hosts.toml"))

	require.NoError(t, os.Remove(filepath.Join(dir, "hosts.toml")))
	_, err = e.Install(ca)
	require.NoError(t, err)
	other := *e
	other.Owner = "other/release"
	_, err = other.Install(ca)
	require.EqualError(t, err, dir+" belongs to ns/cr, not other/release: two releases cannot serve the same address 10.96.0.50:443")
	removed, left, err := other.Remove()
	require.NoError(t, err, "another release's entry is not an error of this one: it is left")
	assert.Empty(t, removed)
	assert.Equal(t, []string{dir + " (belongs to ns/cr)"}, left)
	assert.FileExists(t, filepath.Join(dir, "ca.crt"))
}

func TestEntryKeepsAReplacedCAForTheGracePeriod(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, dir := newEntry(t, c)
	one, two := newCA(t, c.t, "CA one"), newCA(t, c.t, "CA two")
	_, err := e.Install(one)
	require.NoError(t, err)

	_, err = e.Install(two)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	assert.Equal(t, string(two)+string(one), string(got), "the new CA first, the replaced one still trusted")
	assert.True(t, e.Installed(two))

	c.t = c.t.Add(59 * time.Minute)
	changed, err := e.Install(two)
	require.NoError(t, err)
	assert.Empty(t, changed)

	c.t = c.t.Add(2 * time.Minute)
	changed, err = e.Install(two)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "ca.crt")}, changed)
	got, err = os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	assert.Equal(t, string(two), string(got), "after the grace period only the new CA")
}

func TestEntryRefusesBadBundles(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	e, dir := newEntry(t, c)
	for input, msg := range map[string]string{
		"":        "the CA bundle is empty",
		"not pem": "the CA bundle holds no PEM CERTIFICATE block",
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n": `the CA bundle holds a "PRIVATE KEY" PEM block; only CERTIFICATE blocks belong in ca.crt`,
		strings.Repeat("x", 70<<10):                                      "the CA bundle is 71680 bytes, more than 65536",
	} {
		_, err := e.Install([]byte(input))
		assert.EqualError(t, err, msg)
	}
	assert.NoDirExists(t, dir, "nothing is written for a bad bundle")
}

// TestEntryForAnIPv6Host: the directory and the URLs carry the bracketed host exactly as an image reference
// names it ([fd00:10:96::50]:443/repo:tag), which is the name containerd looks up in certs.d.
func TestEntryForAnIPv6Host(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	const v6 = "[fd00:10:96::50]:443"
	e := &trust.Entry{Dir: t.TempDir(), HostDir: "/etc/containerd/certs.d", Host: v6, Owner: "ns/cr",
		PreviousCAGrace: time.Hour, Now: c.Now}
	_, err := e.Install(newCA(t, c.t, "CA one"))
	require.NoError(t, err)
	hosts, err := os.ReadFile(filepath.Join(e.Dir, v6, "hosts.toml"))
	require.NoError(t, err)
	assert.Equal(t, `# Written by connected-registry (ns/cr); removed on helm uninstall. Do not edit.
server = "https://[fd00:10:96::50]:443"

[host."https://[fd00:10:96::50]:443"]
  capabilities = ["pull", "resolve"]
  ca = "/etc/containerd/certs.d/[fd00:10:96::50]:443/ca.crt"
`, string(hosts))
	removed, _, err := e.Remove()
	require.NoError(t, err)
	assert.Contains(t, removed, filepath.Join(e.Dir, v6, "hosts.toml"))
	assert.NoDirExists(t, filepath.Join(e.Dir, v6))
}
