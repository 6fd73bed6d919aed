package trust

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"sigs.k8s.io/yaml"
)

// Verdict is whether containerd will use the entry the agent writes.
type Verdict string

const (
	// WillUse: containerd's registry config_path holds the certs.d directory the agent writes into.
	WillUse Verdict = "yes"
	// WontUse: containerd reads no certs.d directory, or another one; the entry has no effect.
	WontUse Verdict = "no"
	// Unknown: nothing tells for sure (no config file: containerd's own default applies).
	Unknown Verdict = "unknown"
)

// Detection is the result of Detect: a verdict, the reason in one line, and the source it was read from.
type Detection struct {
	Verdict Verdict
	Reason  string
	// ConfigPath is containerd's effective registry config_path, as a list.
	ConfigPath []string
	// Schema is the containerd config schema version (1, 2 or 3); 0 when no file was read.
	Schema int
}

// The CRI registry plugin of each containerd config schema.
const (
	criV2      = "io.containerd.grpc.v1.cri" // schema 2 (containerd 1.x, and 2.x reading old files)
	criImages3 = "io.containerd.cri.v1.images"
)

// maxConfigSize caps what Detect reads: a containerd config or registries.yaml is a few KiB.
const maxConfigSize = 1 << 20

// DetectOptions say where to look. Paths are as this process sees them; HostCertsDir is the certs.d directory as
// containerd sees it on the node (what config_path must name).
type DetectOptions struct {
	// ContainerdConfig is containerd's config.toml; empty or missing means containerd runs on its defaults.
	ContainerdConfig string
	// RegistriesYAML is k3s/rke2's registries.yaml, when those distributions manage containerd.
	RegistriesYAML string
	// HostCertsDir is the certs.d directory the agent writes into, as a path on the node.
	HostCertsDir string
	// Host is the registry host the entry is for, like 10.96.0.50:443.
	Host string
}

// Detect reads containerd's configuration and tells whether containerd will use certs.d/<Host>. It never
// changes anything, and containerd is never restarted: a wrong setting is reported, with the fix.
func Detect(o DetectOptions) Detection {
	if o.RegistriesYAML != "" {
		if d, ok := detectK3s(o); ok {
			return d
		}
	}
	b, err := readCapped(o.ContainerdConfig)
	if errors.Is(err, fs.ErrNotExist) || o.ContainerdConfig == "" {
		return Detection{Verdict: Unknown, Reason: fmt.Sprintf(
			"no containerd config file at %s: containerd 2.x reads %s by default, containerd 1.x reads no certs.d "+
				"directory; set config_path in the CRI registry section to %s", orNone(o.ContainerdConfig), "/etc/containerd/certs.d", o.HostCertsDir)}
	}
	if err != nil {
		return Detection{Verdict: Unknown, Reason: fmt.Sprintf("reading containerd config %s: %v", o.ContainerdConfig, err)}
	}
	return detectConfig(b, o)
}

func orNone(p string) string {
	if p == "" {
		return "(none given)"
	}
	return p
}

func readCapped(path string) ([]byte, error) {
	if path == "" {
		return nil, fs.ErrNotExist
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigSize)
	}
	return b, nil
}

// containerdConfig is the part of containerd's config.toml that decides where registry hosts are read from.
type containerdConfig struct {
	Version int                       `toml:"version"`
	Imports []string                  `toml:"imports"`
	Plugins map[string]map[string]any `toml:"plugins"`
}

func detectConfig(b []byte, o DetectOptions) Detection {
	var c containerdConfig
	if _, err := toml.Decode(string(b), &c); err != nil {
		return Detection{Verdict: Unknown, Reason: fmt.Sprintf("containerd config %s is not valid TOML: %v", o.ContainerdConfig, err)}
	}
	schema := c.Version
	if schema == 0 {
		schema = 1
	}
	var plugin, section string
	var registry map[string]any
	switch schema {
	case 1:
		// Schema 1 names the plugin "cri" (containerd 1.2-1.4); config_path arrived later, in schema 2.
		plugin = "cri"
	case 2:
		plugin = criV2
	case 3:
		plugin = criImages3
	default:
		return Detection{Verdict: Unknown, Schema: schema, Reason: fmt.Sprintf("containerd config %s has schema version %d, which this agent does not know", o.ContainerdConfig, schema)}
	}
	section = fmt.Sprintf("[plugins.%q.registry]", plugin)
	if p, ok := c.Plugins[plugin]; ok {
		registry, _ = p["registry"].(map[string]any)
	}
	d := Detection{Schema: schema}
	if len(c.Imports) > 0 {
		d.Reason = fmt.Sprintf(" (the file imports %s, which may override it)", strings.Join(c.Imports, ", "))
	}
	raw, set := registry["config_path"].(string)
	if !set || raw == "" {
		if schema == 3 {
			// containerd 2.x defaults config_path to /etc/containerd/certs.d:/etc/docker/certs.d.
			raw = "/etc/containerd/certs.d:/etc/docker/certs.d"
		} else {
			d.Verdict = WontUse
			legacy := ""
			if _, ok := registry["mirrors"]; ok {
				legacy = " (it uses the deprecated registry.mirrors/configs instead)"
			}
			d.Reason = fmt.Sprintf("containerd config %s (schema %d) sets no config_path in %s%s: containerd ignores certs.d; "+
				"add config_path = %q there and restart containerd once%s", o.ContainerdConfig, schema, section, legacy, o.HostCertsDir, d.Reason)
			return d
		}
	}
	d.ConfigPath = filepath.SplitList(raw)
	want := filepath.Clean(o.HostCertsDir)
	if slices.ContainsFunc(d.ConfigPath, func(p string) bool { return filepath.Clean(p) == want }) {
		d.Verdict = WillUse
		d.Reason = fmt.Sprintf("containerd config %s (schema %d) reads %s (config_path %q)%s", o.ContainerdConfig, schema, want, raw, d.Reason)
		return d
	}
	d.Verdict = WontUse
	d.Reason = fmt.Sprintf("containerd config %s (schema %d) reads config_path %q, which does not hold %s: set "+
		"trustDistribution.certsDir to one of those directories, or add %s to config_path in %s%s",
		o.ContainerdConfig, schema, raw, want, want, section, d.Reason)
	return d
}

// registriesYAML is the part of k3s/rke2's registries.yaml that configures a registry's TLS.
type registriesYAML struct {
	Configs map[string]struct {
		TLS struct {
			CAFile string `json:"ca_file"`
		} `json:"tls"`
	} `json:"configs"`
}

// detectK3s handles nodes whose containerd k3s or rke2 configures: they regenerate certs.d from registries.yaml
// when they start, so an entry written there is lost at the next restart unless registries.yaml names it.
func detectK3s(o DetectOptions) (Detection, bool) {
	b, err := readCapped(o.RegistriesYAML)
	if errors.Is(err, fs.ErrNotExist) {
		return Detection{}, false
	}
	if err != nil {
		return Detection{Verdict: Unknown, Reason: fmt.Sprintf("reading %s: %v", o.RegistriesYAML, err)}, true
	}
	var r registriesYAML
	if err := yaml.Unmarshal(b, &r); err != nil {
		return Detection{Verdict: Unknown, Reason: fmt.Sprintf("%s is not valid YAML: %v", o.RegistriesYAML, err)}, true
	}
	if c, ok := r.Configs[o.Host]; ok && c.TLS.CAFile != "" {
		return Detection{Verdict: WillUse, Reason: fmt.Sprintf("%s configures %s with ca_file %s (k3s/rke2 manage containerd's hosts)", o.RegistriesYAML, o.Host, c.TLS.CAFile)}, true
	}
	return Detection{Verdict: WontUse, Reason: fmt.Sprintf(
		"k3s/rke2 manage containerd from %s and rewrite its certs.d when they start: add configs.%q.tls.ca_file: %s there "+
			"and restart k3s/rke2 once", o.RegistriesYAML, o.Host, filepath.Join(o.HostCertsDir, o.Host, "ca.crt"))}, true
}
