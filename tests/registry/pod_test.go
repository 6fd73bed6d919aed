package registry_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/chartrender"
)

// The chart's contract for release "cr" (chartrender's default release name and namespace).
const (
	deploymentName    = "cr-connected-registry"
	configMapName     = "cr-connected-registry-config"
	configKey         = "config.yml"
	registryContainer = "registry"
)

// pod runs the rendered Deployment's pod as local processes: the init containers with our hooks binary, the
// registry container with Distribution, each with the rendered arguments, environment and configuration,
// and every path under a volume mount remapped to a directory of the test.
type pod struct {
	res        *chartrender.Result
	spec       map[string]any
	dir        string
	registry   string // Distribution binary
	hooks      string // our hooks binary, standing in for the hooks image
	external   map[string]map[string]string
	port       int // where the registry's HTTPS listener is moved to
	containerP int // the container port the chart declares for it

	// Filled by prepare.
	volumes    map[string]string // volume name → host directory
	configPath string            // host path of the registry's config file
	config     string            // the configuration the registry runs, after remapping
	remapped   map[string]string // configuration or environment key → container path, for the report
	hostPath   map[string]string // configuration or environment key → host path
	proc       *process
	// listen maps the loopback addresses native sidecars listen on in the pod to the free ports they use here,
	// for the registry's environment (HTTPS_PROXY of the parent gate).
	listen   map[string]string
	sidecars []*process
}

// newPod reads the registry Deployment of res. external holds the Secrets the user creates (name → key →
// value) that the chart only references.
func newPod(t *testing.T, res *chartrender.Result, registryBin, hooksBin string, external map[string]map[string]string) *pod {
	t.Helper()
	dep, ok := res.Find("Deployment", deploymentName)
	if !ok {
		t.Fatalf("the chart renders no Deployment %s", deploymentName)
	}
	spec := mapAt(t, dep.Object, "spec", "template", "spec")
	p := &pod{res: res, spec: spec, dir: t.TempDir(), registry: registryBin, hooks: hooksBin, external: external,
		port: freePort(t), volumes: map[string]string{}, remapped: map[string]string{}, hostPath: map[string]string{}}
	return p
}

// container returns the named container (or init container) of the pod spec.
func (p *pod) container(t *testing.T, list, name string) map[string]any {
	t.Helper()
	for _, c := range sliceAt(p.spec, list) {
		cm, _ := c.(map[string]any)
		if cm["name"] == name {
			return cm
		}
	}
	t.Fatalf("the Deployment has no %s named %q", list, name)
	return nil
}

// mounts maps a container's mount paths to host paths.
func (p *pod) mounts(t *testing.T, c map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range sliceAt(c, "volumeMounts") {
		mm := m.(map[string]any)
		name, _ := mm["name"].(string)
		host, ok := p.volumes[name]
		if !ok {
			t.Fatalf("container %s mounts volume %q, which the pod does not declare", c["name"], name)
		}
		if sub, _ := mm["subPath"].(string); sub != "" {
			host = filepath.Join(host, sub)
		}
		out[mm["mountPath"].(string)] = host
	}
	return out
}

// remap maps an absolute container path onto the host through the longest matching mount.
func remap(mounts map[string]string, path string) (string, bool) {
	best := ""
	for mp := range mounts {
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return path, false
	}
	return filepath.Join(mounts[best], strings.TrimPrefix(path, best)), true
}

// prepare creates the volumes: ConfigMaps and Secrets from the render (or from external), emptyDirs and the
// PersistentVolumeClaim as directories. Each call recreates the emptyDirs, as a new pod gets new ones, and
// keeps the claim's directory.
func (p *pod) prepare(t *testing.T) {
	t.Helper()
	for _, v := range sliceAt(p.spec, "volumes") {
		vm := v.(map[string]any)
		name := vm["name"].(string)
		dir := filepath.Join(p.dir, "volumes", name)
		p.volumes[name] = dir
		switch {
		case vm["emptyDir"] != nil:
			must(t, os.RemoveAll(dir))
			must(t, os.MkdirAll(dir, 0o777))
		case vm["persistentVolumeClaim"] != nil:
			claim, _ := mapAt(t, vm, "persistentVolumeClaim")["claimName"].(string)
			if _, ok := p.res.Find("PersistentVolumeClaim", claim); !ok {
				t.Fatalf("volume %s uses PersistentVolumeClaim %q, which the chart does not render", name, claim)
			}
			must(t, os.MkdirAll(dir, 0o777))
		case vm["configMap"] != nil:
			src := mapAt(t, vm, "configMap")
			doc, ok := p.res.Find("ConfigMap", src["name"].(string))
			if !ok {
				t.Fatalf("volume %s uses ConfigMap %q, which the chart does not render", name, src["name"])
			}
			data := map[string]string{}
			for k, v := range mapAt(t, doc.Object, "data") {
				data[k] = fmt.Sprint(v)
			}
			writeVolume(t, dir, data, src)
		case vm["secret"] != nil:
			src := mapAt(t, vm, "secret")
			writeVolume(t, dir, p.secretOf(t, src["secretName"].(string)), src)
		case isServiceAccountToken(vm):
			// No API server here: only the tls-reloader mounts the token, and standInForTLSReloader replaces it.
			must(t, os.RemoveAll(dir))
			must(t, os.MkdirAll(dir, 0o755))
		default:
			t.Fatalf("volume %s has a type this test does not emulate: %v", name, vm)
		}
	}
}

// isServiceAccountToken tells whether a volume is a projected API token (a serviceAccountToken source, with the
// cluster's CA and the namespace beside it).
func isServiceAccountToken(vm map[string]any) bool {
	proj, ok := vm["projected"].(map[string]any)
	if !ok {
		return false
	}
	for _, src := range sliceAt(proj, "sources") {
		if sm, _ := src.(map[string]any); sm["serviceAccountToken"] != nil {
			return true
		}
	}
	return false
}

// secretOf returns the keys of a Secret the chart renders or the test creates.
func (p *pod) secretOf(t *testing.T, name string) map[string]string {
	t.Helper()
	if doc, rendered := p.res.Find("Secret", name); rendered {
		return secretData(t, doc.Object)
	}
	data, ok := p.external[name]
	if !ok {
		t.Fatalf("Secret %q is neither rendered by the chart nor created by the test", name)
	}
	return data
}

// writeVolume writes a ConfigMap's or Secret's keys as files, honouring items.
func writeVolume(t *testing.T, dir string, data map[string]string, src map[string]any) {
	t.Helper()
	must(t, os.RemoveAll(dir))
	must(t, os.MkdirAll(dir, 0o755))
	items := sliceAt(src, "items")
	if len(items) == 0 {
		for k, v := range data {
			writeFile(t, filepath.Join(dir, k), []byte(v), 0o644)
		}
		return
	}
	for _, it := range items {
		im := it.(map[string]any)
		key, path := im["key"].(string), im["path"].(string)
		v, ok := data[key]
		if !ok {
			t.Fatalf("volume item %q names a key its source does not have", key)
		}
		writeFile(t, filepath.Join(dir, path), []byte(v), 0o644)
	}
}

func secretData(t *testing.T, obj map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	if d, ok := obj["data"].(map[string]any); ok {
		for k, v := range d {
			raw, err := base64.StdEncoding.DecodeString(fmt.Sprint(v))
			if err != nil {
				t.Fatalf("Secret %v key %s is not base64: %v", obj["metadata"], k, err)
			}
			out[k] = string(raw)
		}
	}
	if d, ok := obj["stringData"].(map[string]any); ok {
		for k, v := range d {
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}

// env resolves a container's environment, remapping values that are paths under its mounts.
func (p *pod) env(t *testing.T, c map[string]any, mounts map[string]string) ([]string, map[string]string) {
	t.Helper()
	raw := map[string]string{}
	var out []string
	for _, e := range sliceAt(c, "env") {
		em := e.(map[string]any)
		name := em["name"].(string)
		value, hasValue := em["value"].(string)
		if from, ok := em["valueFrom"].(map[string]any); ok {
			value = p.valueFrom(t, name, from)
		} else if !hasValue && em["value"] != nil {
			t.Fatalf("env %s of container %s has a non-string value %v", name, c["name"], em["value"])
		}
		raw[name] = value
		if strings.HasPrefix(value, "/") {
			if host, ok := remap(mounts, value); ok {
				p.remapped["env "+name] = value
				p.hostPath["env "+name] = host
				value = host
			}
		}
		for from, to := range p.listen {
			value = strings.ReplaceAll(value, from, to)
		}
		out = append(out, name+"="+value)
	}
	if len(sliceAt(c, "envFrom")) > 0 {
		t.Fatalf("container %s uses envFrom, which this test does not emulate", c["name"])
	}
	return out, raw
}

func (p *pod) valueFrom(t *testing.T, name string, from map[string]any) string {
	t.Helper()
	if ref, ok := from["secretKeyRef"].(map[string]any); ok {
		doc, found := p.res.Find("Secret", ref["name"].(string))
		if !found {
			t.Fatalf("env %s reads Secret %v, which the chart does not render", name, ref["name"])
		}
		return secretData(t, doc.Object)[ref["key"].(string)]
	}
	if ref, ok := from["configMapKeyRef"].(map[string]any); ok {
		doc, found := p.res.Find("ConfigMap", ref["name"].(string))
		if !found {
			t.Fatalf("env %s reads ConfigMap %v, which the chart does not render", name, ref["name"])
		}
		return fmt.Sprint(mapAt(t, doc.Object, "data")[ref["key"].(string)])
	}
	t.Fatalf("env %s uses a valueFrom this test does not emulate: %v", name, from)
	return ""
}

// remapArgs maps path arguments (also the value of --flag=/path) through mounts.
func remapArgs(mounts map[string]string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") && strings.HasPrefix(v, "/") {
			if host, ok := remap(mounts, v); ok {
				a = k + "=" + host
			}
		} else if strings.HasPrefix(a, "/") {
			a, _ = remap(mounts, a)
		}
		out[i] = a
	}
	return out
}

func stringSlice(v any) []string {
	var out []string
	for _, x := range sliceOf(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// runInitContainers runs every init container of the pod with our hooks binary, which is what the chart's
// init containers run (the hooks image).
func (p *pod) runInitContainers(t *testing.T) {
	t.Helper()
	for _, c := range sliceAt(p.spec, "initContainers") {
		cm := c.(map[string]any)
		if image, _ := cm["image"].(string); !strings.Contains(image, "/hooks:") {
			t.Fatalf("init container %s runs image %q, not the hooks image this test can emulate", cm["name"], image)
		}
		if len(sliceOf(cm["command"])) > 0 {
			t.Fatalf("init container %s overrides the hooks image's entrypoint: %v", cm["name"], cm["command"])
		}
		mounts := p.mounts(t, cm)
		env, _ := p.env(t, cm, mounts)
		args := remapArgs(mounts, stringSlice(cm["args"]))
		if len(args) > 0 && args[0] == "tls-reloader" && cm["restartPolicy"] == "Always" {
			p.standInForTLSReloader(t, cm["name"].(string), args)
			continue
		}
		if cm["restartPolicy"] == "Always" {
			p.startSidecar(t, cm["name"].(string), args, env)
			continue
		}
		cmd := exec.Command(p.hooks, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("init container %s (hooks %s) failed: %v\n%s", cm["name"], strings.Join(args, " "), err, out)
		}
		t.Logf("init container %s: %s", cm["name"], strings.TrimSpace(string(out)))
	}
}

// standInForTLSReloader does what the tls-reloader sidecar does before the registry starts, which needs the API
// server this test has not: it writes the --secret's tls.key and tls.crt, as they are, into --tls-dir. The
// reloader itself is tested by its unit tests and end to end.
func (p *pod) standInForTLSReloader(t *testing.T, name string, args []string) {
	t.Helper()
	var secret, dir string
	for _, a := range args[1:] {
		if v, ok := strings.CutPrefix(a, "--secret="); ok {
			secret = v
		}
		if v, ok := strings.CutPrefix(a, "--tls-dir="); ok {
			dir = v
		}
	}
	if secret == "" || dir == "" || !filepath.IsAbs(dir) {
		t.Fatalf("sidecar %s runs tls-reloader without --secret or a --tls-dir on a volume: %q", name, args)
	}
	data := p.secretOf(t, secret)
	if data["tls.crt"] == "" || data["tls.key"] == "" {
		t.Fatalf("Secret %s, which sidecar %s serves, lacks tls.crt or tls.key", secret, name)
	}
	writeFile(t, filepath.Join(dir, "tls.key"), []byte(data["tls.key"]), 0o600)
	writeFile(t, filepath.Join(dir, "tls.crt"), []byte(data["tls.crt"]), 0o644)
	t.Logf("sidecar %s (tls-reloader, needs the API server) stood in for: wrote Secret %s's tls.crt and tls.key into %s", name, secret, dir)
}

// startSidecar starts a native sidecar (an init container with restartPolicy Always) in the background, as the
// kubelet does, with its --listen address on a free port of 127.0.0.1 (p.listen maps it for the registry).
func (p *pod) startSidecar(t *testing.T, name string, args, env []string) {
	t.Helper()
	if p.listen == nil {
		p.listen = map[string]string{}
	}
	for i, a := range args {
		if addr, ok := strings.CutPrefix(a, "--listen="); ok {
			if _, seen := p.listen[addr]; !seen {
				p.listen[addr] = "127.0.0.1:" + strconv.Itoa(freePort(t))
			}
			args[i] = "--listen=" + p.listen[addr]
		}
	}
	sc := startProcess(t, "sidecar "+name, p.hooks, args, append([]string{"PATH=" + os.Getenv("PATH")}, env...))
	p.sidecars = append(p.sidecars, sc)
	for addr, local := range p.listen {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", local, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if sc.exited() || time.Now().After(deadline) {
				t.Fatalf("sidecar %s does not listen on %s (pod address %s): %v\n%s", name, local, addr, err, sc.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// start runs the pod: volumes, init containers, then the registry container. Calling it again after stop
// is a new pod of the same Deployment: fresh emptyDirs, the same claim.
func (p *pod) start(t *testing.T) *process {
	t.Helper()
	for _, sc := range p.sidecars {
		sc.stop(t)
	}
	p.sidecars = nil
	p.prepare(t)
	p.runInitContainers(t)

	c := p.container(t, "containers", registryContainer)
	mounts := p.mounts(t, c)
	if len(sliceOf(c["command"])) > 0 {
		t.Fatalf("the registry container overrides the image's entrypoint (%v); the test expects args only", c["command"])
	}
	args := stringSlice(c["args"])
	if len(args) != 2 || args[0] != "serve" {
		t.Fatalf("the registry container's args are %q, want [serve <config>]", args)
	}
	host, ok := remap(mounts, args[1])
	if !ok {
		t.Fatalf("the registry reads its configuration from %s, which is on no volume of the registry container", args[1])
	}
	p.configPath = host
	p.config = p.remapConfig(t, mounts, host)
	env, _ := p.env(t, c, mounts)
	full := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(p.dir, "home")}, env...)
	p.proc = startProcess(t, "connected registry", p.registry, []string{"serve", host}, full)
	return p.proc
}

// remapConfig rewrites the registry's configuration file in place: http.addr moves to 127.0.0.1:<port>,
// every absolute path moves onto the host through the container's mounts, the sidecars' addresses to their
// ports here. Nothing else changes. A path on
// no volume fails the test: on a read-only root filesystem it would not work in the cluster either.
func (p *pod) remapConfig(t *testing.T, mounts map[string]string, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("the rendered %s is not YAML: %v", configKey, err)
	}
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, key)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if key != "" {
					k = key + "." + k
				}
				walk(n.Content[i+1], k)
			}
		case yaml.ScalarNode:
			switch {
			case key == "http.addr":
				_, port, err := net.SplitHostPort(n.Value)
				if err != nil {
					t.Fatalf("http.addr %q is not host:port: %v", n.Value, err)
				}
				p.containerP, _ = strconv.Atoi(port)
				p.remapped[key] = n.Value
				n.Value = "127.0.0.1:" + strconv.Itoa(p.port)
			case key == "http.debug.addr" || key == "metrics.addr":
				p.remapped[key] = n.Value
				n.Value = "127.0.0.1:" + strconv.Itoa(freePort(t))
			case n.Tag == "!!str" && strings.HasPrefix(n.Value, "/") && len(n.Value) > 1:
				host, ok := remap(mounts, n.Value)
				if !ok {
					t.Fatalf("configuration key %s = %s is on no volume mounted in the registry container", key, n.Value)
				}
				p.remapped[key] = n.Value
				p.hostPath[key] = host
				n.Value = host
			default:
				// An address of a native sidecar (proxy.remoteurl names the parent gate).
				for from, to := range p.listen {
					if strings.Contains(n.Value, from) {
						p.remapped[key] = n.Value
						n.Value = strings.ReplaceAll(n.Value, from, to)
					}
				}
			}
		}
	}
	walk(&doc, "")
	out, err := yaml.Marshal(&doc)
	must(t, err)
	must(t, os.Chmod(path, 0o644))
	must(t, os.WriteFile(path, out, 0o644))
	return string(out)
}

// containerPort returns the registry container's port named name.
func (p *pod) containerPort(t *testing.T, name string) int {
	t.Helper()
	c := p.container(t, "containers", registryContainer)
	for _, port := range sliceAt(c, "ports") {
		pm := port.(map[string]any)
		if pm["name"] == name {
			n, _ := strconv.Atoi(fmt.Sprint(pm["containerPort"]))
			return n
		}
	}
	t.Fatalf("the registry container has no port named %q", name)
	return 0
}

// readinessURL builds the URL of the registry container's readiness probe, on the remapped port.
func (p *pod) readinessURL(t *testing.T) string {
	t.Helper()
	c := p.container(t, "containers", registryContainer)
	get := mapAt(t, c, "readinessProbe", "httpGet")
	scheme, _ := get["scheme"].(string)
	if scheme != "HTTPS" {
		t.Fatalf("the registry's readiness probe uses scheme %q, want HTTPS", scheme)
	}
	port := fmt.Sprint(get["port"])
	if n, err := strconv.Atoi(port); err == nil {
		if n != p.containerP {
			t.Fatalf("the readiness probe checks port %d, but the registry listens on %d", n, p.containerP)
		}
	} else if pn := p.containerPort(t, port); pn != p.containerP {
		t.Fatalf("the readiness probe's port %s is %d, but the registry listens on %d", port, pn, p.containerP)
	}
	path, _ := get["path"].(string)
	return fmt.Sprintf("https://127.0.0.1:%d%s", p.port, path)
}

func (p *pod) remappedKeys() string {
	keys := make([]string, 0, len(p.remapped))
	for k, v := range p.remapped {
		keys = append(keys, k+" "+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func mapAt(t *testing.T, m map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := m
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("rendered object has no map at %s", strings.Join(path, "."))
		}
		cur = next
	}
	return cur
}

func sliceAt(m map[string]any, key string) []any { return sliceOf(m[key]) }

func sliceOf(v any) []any {
	s, _ := v.([]any)
	return s
}
