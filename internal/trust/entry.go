package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MarkerFile is written into the host directory next to what the agent wrote. It names the owner and every file
// with the hash of what was written, so removal takes exactly that and nothing else.
const MarkerFile = ".connected-registry.json"

// The files of an entry.
const (
	CAFile    = "ca.crt"
	HostsFile = "hosts.toml"
)

// maxCABundle caps the CA input: a bundle of at most 10 certificates fits well below it.
const maxCABundle = 64 << 10

// ErrForeign is returned when the host directory holds files the agent did not write.
var ErrForeign = errors.New("not written by connected-registry")

// ErrBadHost is returned for a registry host that is not a host name or IP address with a port.
var ErrBadHost = errors.New("not a host:port")

// ErrSymlink is returned when the host directory or the marker is a symbolic link: the agent writes and removes
// only in a directory of its own, never through a link someone planted.
var ErrSymlink = errors.New("is a symbolic link")

// ValidHost checks that host is what a certs.d entry may be named after: a DNS name, an IPv4 address or a
// bracketed IPv6 address, then a port; nothing that could name a path (no separator, no "..").
func ValidHost(host string) error {
	h, port, err := net.SplitHostPort(host)
	if err != nil || h == "" || port == "" {
		return fmt.Errorf("%q is %w (like 10.96.0.50:443)", host, ErrBadHost)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%q is %w: the port %q is not a number from 1 to 65535", host, ErrBadHost, port)
	}
	if strings.ContainsAny(host, "/\\") || strings.Contains(host, "..") {
		return fmt.Errorf("%q is %w: it holds a path separator or \"..\"", host, ErrBadHost)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" || a.Is6() != strings.HasPrefix(host, "[") {
			return fmt.Errorf("%q is %w: write an IPv6 address in brackets, without a zone", host, ErrBadHost)
		}
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("%q is %w: the host name is longer than 253 characters", host, ErrBadHost)
	}
	for _, label := range strings.Split(h, ".") {
		if !dnsLabel.MatchString(label) {
			return fmt.Errorf("%q is %w: %q is not a DNS label", host, ErrBadHost, label)
		}
	}
	return nil
}

var dnsLabel = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Entry is the certs.d/<Host> directory of one registry host.
type Entry struct {
	// Dir is the certs.d directory as this process sees it (the hostPath mount).
	Dir string
	// HostDir is the same directory as containerd sees it on the node; hosts.toml names ca.crt by this path.
	HostDir string
	// Host is the registry's host and port, like 10.96.0.50:443.
	Host string
	// Owner names the release, namespace/name; another owner's entry is never touched.
	Owner string
	// PreviousCAGrace is how long a CA that left the bundle stays trusted, so a leaf it signed keeps working
	// while the registry switches to the new one.
	PreviousCAGrace time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

type marker struct {
	Owner string `json:"owner"`
	// CreatedDir is true when the agent made the host directory, so removal may remove it too.
	CreatedDir bool `json:"createdDir"`
	// Files maps each file written to the SHA-256 of its content.
	Files map[string]string `json:"files"`
	// Retired are CAs that left the bundle, trusted until the time given.
	Retired []retired `json:"retired,omitempty"`
}

type retired struct {
	PEM   string    `json:"pem"`
	Until time.Time `json:"until"`
}

func (e *Entry) dir() string { return filepath.Join(e.Dir, e.Host) }

func (e *Entry) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// HostsTOML is the hosts.toml the agent writes: the registry is its own server, for pull and resolve, trusted
// through ca.crt.
func (e *Entry) HostsTOML() []byte {
	ca := filepath.Join(e.HostDir, e.Host, CAFile)
	return fmt.Appendf(nil, "# Written by connected-registry (%s); removed on helm uninstall. Do not edit.\n"+
		"server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
		e.Owner, "https://"+e.Host, "https://"+e.Host, ca)
}

// Installed tells whether the entry on disk is the one Install would write for caPEM, without writing.
func (e *Entry) Installed(caPEM []byte) bool {
	m, err := e.readMarker()
	if err != nil || m == nil || m.Owner != e.Owner {
		return false
	}
	certs, err := parseBundle(caPEM)
	if err != nil {
		return false
	}
	onDisk, err := os.ReadFile(filepath.Join(e.dir(), CAFile))
	if err != nil {
		return false
	}
	for _, c := range certs {
		if !bytes.Contains(onDisk, c) {
			return false
		}
	}
	hosts, err := os.ReadFile(filepath.Join(e.dir(), HostsFile))
	return err == nil && bytes.Equal(hosts, e.HostsTOML())
}

// Install writes ca.crt (the CAs of caPEM, plus CAs that left it less than PreviousCAGrace ago) and hosts.toml,
// each atomically and only when its content differs. It reports the files it changed.
func (e *Entry) Install(caPEM []byte) ([]string, error) {
	if err := ValidHost(e.Host); err != nil {
		return nil, err
	}
	certs, err := parseBundle(caPEM)
	if err != nil {
		return nil, err
	}
	if err := e.checkDir(); err != nil {
		return nil, err
	}
	m, err := e.readMarker()
	if err != nil {
		return nil, err
	}
	dir := e.dir()
	if m == nil {
		if err := e.checkForeign(); err != nil {
			return nil, err
		}
		m = &marker{Owner: e.Owner, Files: map[string]string{}}
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, fmt.Errorf("creating %s: %w", dir, err)
			}
			m.CreatedDir = true
		} else if err != nil {
			return nil, err
		}
	} else if m.Owner != e.Owner {
		return nil, fmt.Errorf("%s belongs to %s, not %s: two releases cannot serve the same address %s", dir, m.Owner, e.Owner, e.Host)
	}

	// CAs that were in the old bundle and are not in the new one stay for the grace period.
	now := e.now()
	var bundle [][]byte
	bundle = append(bundle, certs...)
	old, _ := os.ReadFile(filepath.Join(dir, CAFile))
	oldCerts, _ := parseBundle(old)
	var keep []retired
	for _, r := range m.Retired {
		if now.Before(r.Until) && !slices.ContainsFunc(bundle, func(c []byte) bool { return string(c) == r.PEM }) {
			keep = append(keep, r)
		}
	}
	for _, c := range oldCerts {
		// A CA retired before is not retired again: its grace period started then.
		if slices.ContainsFunc(bundle, func(b []byte) bool { return bytes.Equal(b, c) }) ||
			slices.ContainsFunc(m.Retired, func(r retired) bool { return r.PEM == string(c) }) {
			continue
		}
		if x, err := x509.ParseCertificate(mustDER(c)); err == nil && now.Before(x.NotAfter) && e.PreviousCAGrace > 0 {
			keep = append(keep, retired{PEM: string(c), Until: now.Add(e.PreviousCAGrace)})
		}
	}
	m.Retired = keep
	for _, r := range keep {
		bundle = append(bundle, []byte(r.PEM))
	}

	want := map[string][]byte{CAFile: bytes.Join(bundle, nil), HostsFile: e.HostsTOML()}
	// The marker names every file before the file exists, so an interrupted install is still removed cleanly.
	for name, content := range want {
		m.Files[name] = digest(content)
	}
	if err := e.writeMarker(m); err != nil {
		return nil, err
	}
	var changed []string
	for _, name := range []string{CAFile, HostsFile} {
		path := filepath.Join(dir, name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, want[name]) {
			continue
		}
		if err := WriteFileAtomic(path, want[name], 0o644); err != nil {
			return changed, err
		}
		changed = append(changed, path)
	}
	return changed, nil
}

// Remove deletes what the marker names, when its content is still what the agent wrote, then the marker, then
// the host directory if the agent created it and it is empty. It reports what it removed and what it left.
// An entry of another owner, or one behind a symbolic link, is not this owner's: it is left, and reported as left.
func (e *Entry) Remove() (removed, left []string, err error) {
	if err := ValidHost(e.Host); err != nil {
		return nil, nil, err
	}
	if err := e.checkDir(); errors.Is(err, ErrSymlink) {
		return nil, []string{e.dir() + " (a symbolic link, not written by connected-registry)"}, nil
	} else if err != nil {
		return nil, nil, err
	}
	m, err := e.readMarker()
	if errors.Is(err, ErrSymlink) {
		return nil, []string{e.dir() + " (its marker is a symbolic link, not written by connected-registry)"}, nil
	}
	if err != nil || m == nil {
		return nil, nil, err
	}
	if m.Owner != e.Owner {
		return nil, []string{fmt.Sprintf("%s (belongs to %s)", e.dir(), m.Owner)}, nil
	}
	dir := e.dir()
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		path := filepath.Join(dir, filepath.Base(name))
		cur, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return removed, left, err
		case digest(cur) != m.Files[name]:
			left = append(left, path+" (changed since the agent wrote it)")
			continue
		}
		if err := os.Remove(path); err != nil {
			return removed, left, err
		}
		removed = append(removed, path)
	}
	if err := os.Remove(filepath.Join(dir, MarkerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, left, err
	}
	removed = append(removed, filepath.Join(dir, MarkerFile))
	if m.CreatedDir {
		if rest, _ := os.ReadDir(dir); len(rest) == 0 {
			if err := os.Remove(dir); err != nil {
				return removed, left, err
			}
			removed = append(removed, dir)
		} else {
			left = append(left, dir+" (holds files the agent did not write)")
		}
	}
	return removed, left, nil
}

// OwnedHosts lists the hosts whose entry under dir has a marker naming owner: what the agent of that release
// wrote on this node, whatever address the release's values name today. Links, files, damaged markers and entries
// of other owners are not listed.
func OwnedHosts(dir, owner string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, de := range entries {
		if !de.IsDir() || ValidHost(de.Name()) != nil {
			continue
		}
		if m, err := readMarker(filepath.Join(dir, de.Name())); err == nil && m != nil && m.Owner == owner {
			hosts = append(hosts, de.Name())
		}
	}
	return hosts, nil
}

// checkDir refuses a host directory that is a symbolic link (or not a directory): writing through it would
// configure another registry host, or write outside certs.d. A missing directory is fine.
func (e *Entry) checkDir() error {
	fi, err := os.Lstat(e.dir())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(e.dir())
		return fmt.Errorf("%s %w (to %s), which the trust agent never writes through: remove the link, or set "+
			"trustDistribution.enabled=false if another tool configures %s on this node", e.dir(), ErrSymlink, target, e.Host)
	case !fi.IsDir():
		return fmt.Errorf("%s is a file, not a directory: remove it, or set trustDistribution.enabled=false if another "+
			"tool configures %s on this node", e.dir(), e.Host)
	}
	return nil
}

// checkForeign refuses a host directory that already holds a ca.crt or hosts.toml nobody marked as ours.
func (e *Entry) checkForeign() error {
	var found []string
	for _, name := range []string{CAFile, HostsFile} {
		if _, err := os.Lstat(filepath.Join(e.dir(), name)); err == nil {
			found = append(found, name)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%s holds %s %w: another tool configures %s on this node; remove its entry or set "+
		"trustDistribution.enabled=false", e.dir(), strings.Join(found, " and "), ErrForeign, e.Host)
}

func (e *Entry) readMarker() (*marker, error) {
	return readMarker(e.dir())
}

// readMarker reads the marker of the host directory dir; nil when there is none. A marker that is a symbolic
// link is refused (ErrSymlink).
func readMarker(dir string) (*marker, error) {
	path := filepath.Join(dir, MarkerFile)
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s %w", path, ErrSymlink)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is damaged (%w): remove the directory %s by hand", path, err, dir)
	}
	if m.Files == nil {
		m.Files = map[string]string{}
	}
	return &m, nil
}

func (e *Entry) writeMarker(m *marker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(e.dir(), MarkerFile)
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, b) {
		return nil
	}
	return WriteFileAtomic(path, b, 0o644)
}

// WriteFileAtomic writes a temporary file next to path and renames it over path, so a reader (containerd, the
// registry) never sees half a file.
func WriteFileAtomic(path string, content []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// parseBundle splits PEM into its CERTIFICATE blocks, each re-encoded canonically, and refuses anything else.
func parseBundle(b []byte) ([][]byte, error) {
	if len(b) > maxCABundle {
		return nil, fmt.Errorf("the CA bundle is %d bytes, more than %d", len(b), maxCABundle)
	}
	var out [][]byte
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("the CA bundle holds a %q PEM block; only CERTIFICATE blocks belong in ca.crt", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("the CA bundle holds a certificate that does not parse: %w", err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}))
	}
	if len(out) == 0 && len(bytes.TrimSpace(b)) > 0 {
		return nil, errors.New("the CA bundle holds no PEM CERTIFICATE block")
	}
	if len(out) == 0 {
		return nil, errors.New("the CA bundle is empty")
	}
	if len(out) > 10 {
		return nil, fmt.Errorf("the CA bundle holds %d certificates, more than 10", len(out))
	}
	return out, nil
}

func mustDER(p []byte) []byte {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil
	}
	return block.Bytes
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Fingerprint is the SHA-256 of the first certificate's DER, as `openssl x509 -fingerprint -sha256` prints it
// without colons; it names a CA in reports.
func Fingerprint(caPEM []byte) string {
	certs, err := parseBundle(caPEM)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(mustDER(certs[0]))
	return hex.EncodeToString(s[:])[:16]
}
