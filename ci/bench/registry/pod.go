package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/connected-registry/connected-registry/internal/chartrender"
)

// The chart's objects for release "cr" (chartrender's default release name).
const (
	deploymentName    = "cr-connected-registry"
	registryContainer = "registry"
)

// pod runs the registry Deployment the chart renders as local processes: the init containers with our hooks
// binary, the registry container with Distribution, with the rendered arguments, environment and
// configuration. Every path under a volume mount moves to a directory of the pod, http.addr moves to
// 127.0.0.1:<port>; nothing else changes. It is the benchmark's twin of the pod emulation in tests/registry.
type pod struct {
	res      *chartrender.Result
	spec     map[string]any
	dir      string
	registry string // Distribution binary
	hooks    string // hooks binary, standing in for the hooks image
	external map[string]map[string]string
	port     int

	volumes map[string]string // volume name → host directory
	// listen maps the loopback addresses native sidecars listen on in the pod to the free ports they use here.
	listen map[string]string
	// sidecars are the native sidecars (init containers with restartPolicy Always) to run beside the registry.
	sidecars []sidecar
	// cpuLimit is what a resourceFieldRef to limits.cpu resolves to, as the kubelet does without a limit: the
	// node's CPUs.
	cpuLimit string
}

// sidecar is a native sidecar's command line, ready to start with the hooks binary.
type sidecar struct {
	name      string
	args, env []string
}

func newPod(res *chartrender.Result, dir, registryBin, hooksBin string, external map[string]map[string]string, port int) (*pod, error) {
	dep, ok := res.Find("Deployment", deploymentName)
	if !ok {
		return nil, fmt.Errorf("the chart renders no Deployment %s", deploymentName)
	}
	spec, err := mapAt(dep.Object, "spec", "template", "spec")
	if err != nil {
		return nil, err
	}
	return &pod{res: res, spec: spec, dir: dir, registry: registryBin, hooks: hooksBin, external: external, port: port,
		volumes: map[string]string{}, cpuLimit: strconv.Itoa(numCPU())}, nil
}

// DataDir is the host directory of the registry's cache volume.
func (p *pod) DataDir() string { return p.volumes["data"] }

func (p *pod) container(list, name string) (map[string]any, error) {
	for _, c := range sliceOf(p.spec[list]) {
		if cm, _ := c.(map[string]any); cm["name"] == name {
			return cm, nil
		}
	}
	return nil, fmt.Errorf("the Deployment has no %s named %q", list, name)
}

func (p *pod) mounts(c map[string]any) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range sliceOf(c["volumeMounts"]) {
		mm, _ := m.(map[string]any)
		name, _ := mm["name"].(string)
		host, ok := p.volumes[name]
		if !ok {
			return nil, fmt.Errorf("container %s mounts volume %q, which the pod does not declare", c["name"], name)
		}
		if sub, _ := mm["subPath"].(string); sub != "" {
			host = filepath.Join(host, sub)
		}
		mp, _ := mm["mountPath"].(string)
		out[mp] = host
	}
	return out, nil
}

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

// prepare creates the volumes; emptyDirs are new on every call, the claim's directory is kept.
func (p *pod) prepare() error {
	for _, v := range sliceOf(p.spec["volumes"]) {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		dir := filepath.Join(p.dir, "volumes", name)
		p.volumes[name] = dir
		switch {
		case vm["emptyDir"] != nil:
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return err
			}
		case vm["projected"] != nil:
			// The API token of the tls-reloader: there is no API server here, see standInForTLSReloader.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		case vm["persistentVolumeClaim"] != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return err
			}
		case vm["configMap"] != nil || vm["secret"] != nil:
			data, src, err := p.volumeData(vm)
			if err != nil {
				return fmt.Errorf("volume %s: %w", name, err)
			}
			if err := writeVolume(dir, data, src); err != nil {
				return err
			}
		default:
			return fmt.Errorf("volume %s has a type the benchmark does not emulate", name)
		}
	}
	return nil
}

func (p *pod) volumeData(vm map[string]any) (map[string]string, map[string]any, error) {
	if src, ok := vm["configMap"].(map[string]any); ok {
		name, _ := src["name"].(string)
		doc, found := p.res.Find("ConfigMap", name)
		if !found {
			return nil, nil, fmt.Errorf("ConfigMap %q is not rendered", name)
		}
		data := map[string]string{}
		m, _ := doc.Object["data"].(map[string]any)
		for k, v := range m {
			data[k] = fmt.Sprint(v)
		}
		return data, src, nil
	}
	src, _ := vm["secret"].(map[string]any)
	name, _ := src["secretName"].(string)
	if doc, found := p.res.Find("Secret", name); found {
		data, err := secretData(doc.Object)
		return data, src, err
	}
	if data, ok := p.external[name]; ok {
		return data, src, nil
	}
	return nil, nil, fmt.Errorf("Secret %q is neither rendered nor created by the benchmark", name)
}

func writeVolume(dir string, data map[string]string, src map[string]any) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	items := sliceOf(src["items"])
	if len(items) == 0 {
		for k, v := range data {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		im, _ := it.(map[string]any)
		key, _ := im["key"].(string)
		path, _ := im["path"].(string)
		v, ok := data[key]
		if !ok {
			return fmt.Errorf("volume item %q names a key its source does not have", key)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, path)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, path), []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func secretData(obj map[string]any) (map[string]string, error) {
	out := map[string]string{}
	if d, ok := obj["data"].(map[string]any); ok {
		for k, v := range d {
			raw, err := base64.StdEncoding.DecodeString(fmt.Sprint(v))
			if err != nil {
				return nil, fmt.Errorf("Secret key %s is not base64: %w", k, err)
			}
			out[k] = string(raw)
		}
	}
	if d, ok := obj["stringData"].(map[string]any); ok {
		for k, v := range d {
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// env resolves a container's environment; values that are paths under its mounts move onto the host.
func (p *pod) env(c map[string]any, mounts map[string]string) ([]string, error) {
	var out []string
	for _, e := range sliceOf(c["env"]) {
		em, _ := e.(map[string]any)
		name, _ := em["name"].(string)
		value, _ := em["value"].(string)
		if from, ok := em["valueFrom"].(map[string]any); ok {
			v, err := p.valueFrom(c, from)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", name, err)
			}
			value = v
		}
		if strings.HasPrefix(value, "/") {
			if host, ok := remap(mounts, value); ok {
				value = host
			}
		}
		for from, to := range p.listen {
			value = strings.ReplaceAll(value, from, to)
		}
		out = append(out, name+"="+value)
	}
	if len(sliceOf(c["envFrom"])) > 0 {
		return nil, fmt.Errorf("container %s uses envFrom, which the benchmark does not emulate", c["name"])
	}
	return out, nil
}

func (p *pod) valueFrom(c map[string]any, from map[string]any) (string, error) {
	if ref, ok := from["secretKeyRef"].(map[string]any); ok {
		name, _ := ref["name"].(string)
		key, _ := ref["key"].(string)
		doc, found := p.res.Find("Secret", name)
		if !found {
			return "", fmt.Errorf("Secret %s is not rendered", name)
		}
		data, err := secretData(doc.Object)
		return data[key], err
	}
	if ref, ok := from["resourceFieldRef"].(map[string]any); ok {
		// As the kubelet resolves it: limits.cpu rounds up to whole CPUs, and is the node's CPUs without a limit.
		res, _ := ref["resource"].(string)
		if res != "limits.cpu" {
			return "", fmt.Errorf("resourceFieldRef %s is not emulated", res)
		}
		lim, _ := mapAt(c, "resources", "limits")
		if v, ok := lim["cpu"]; ok {
			return cpuCeil(fmt.Sprint(v))
		}
		return p.cpuLimit, nil
	}
	return "", fmt.Errorf("valueFrom %v is not emulated", from)
}

// cpuCeil rounds a Kubernetes CPU quantity ("500m", "2") up to whole CPUs, as the downward API does with the
// default divisor.
func cpuCeil(q string) (string, error) {
	if m, ok := strings.CutSuffix(q, "m"); ok {
		n, err := strconv.Atoi(m)
		if err != nil {
			return "", fmt.Errorf("cpu quantity %q: %w", q, err)
		}
		return strconv.Itoa((n + 999) / 1000), nil
	}
	f, err := strconv.ParseFloat(q, 64)
	if err != nil {
		return "", fmt.Errorf("cpu quantity %q: %w", q, err)
	}
	n := int(f)
	if float64(n) < f {
		n++
	}
	return strconv.Itoa(n), nil
}

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

func (p *pod) runInitContainers() error {
	for _, c := range sliceOf(p.spec["initContainers"]) {
		cm, _ := c.(map[string]any)
		if image, _ := cm["image"].(string); !strings.Contains(image, "/hooks:") {
			return fmt.Errorf("init container %s runs image %q, not the hooks image the benchmark can emulate", cm["name"], image)
		}
		mounts, err := p.mounts(cm)
		if err != nil {
			return err
		}
		env, err := p.env(cm, mounts)
		if err != nil {
			return err
		}
		args := remapArgs(mounts, stringSlice(cm["args"]))
		if len(args) > 0 && args[0] == "tls-reloader" && cm["restartPolicy"] == "Always" {
			if err := p.standInForTLSReloader(args); err != nil {
				return fmt.Errorf("init container %s: %w", cm["name"], err)
			}
			continue
		}
		if cm["restartPolicy"] == "Always" {
			// A native sidecar: it runs beside the registry, on a free port here.
			for i, a := range args {
				if addr, ok := strings.CutPrefix(a, "--listen="); ok {
					if _, seen := p.listen[addr]; !seen {
						port, err := freePort()
						if err != nil {
							return err
						}
						p.listen[addr] = "127.0.0.1:" + strconv.Itoa(port)
					}
					args[i] = "--listen=" + p.listen[addr]
				}
			}
			name, _ := cm["name"].(string)
			p.sidecars = append(p.sidecars, sidecar{name: name, args: args, env: append([]string{"PATH=" + os.Getenv("PATH")}, env...)})
			continue
		}
		cmd := exec.Command(p.hooks, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("init container %s failed: %w\n%s", cm["name"], err, out)
		}
	}
	return nil
}

// standInForTLSReloader does what the tls-reloader sidecar does before the registry starts, which needs an API
// server the benchmark has not: it writes the --secret's tls.key and tls.crt into --tls-dir. Renewals play no
// part in the data plane.
func (p *pod) standInForTLSReloader(args []string) error {
	var secret, dir string
	for _, a := range args[1:] {
		if v, ok := strings.CutPrefix(a, "--secret="); ok {
			secret = v
		}
		if v, ok := strings.CutPrefix(a, "--tls-dir="); ok {
			dir = v
		}
	}
	if secret == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("tls-reloader without --secret or a --tls-dir on a volume: %q", args)
	}
	data, _, err := p.volumeData(map[string]any{"secret": map[string]any{"secretName": secret}})
	if err != nil {
		return err
	}
	if data["tls.crt"] == "" || data["tls.key"] == "" {
		return fmt.Errorf("Secret %s lacks tls.crt or tls.key", secret)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte(data["tls.key"]), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tls.crt"), []byte(data["tls.crt"]), 0o644)
}

// command prepares the volumes, runs the init containers and returns the registry container's command line
// and environment, ready to start.
func (p *pod) command() (args, env []string, err error) {
	if err := p.prepare(); err != nil {
		return nil, nil, err
	}
	p.sidecars = nil
	if p.listen == nil {
		p.listen = map[string]string{}
	}
	if err := p.runInitContainers(); err != nil {
		return nil, nil, err
	}
	c, err := p.container("containers", registryContainer)
	if err != nil {
		return nil, nil, err
	}
	mounts, err := p.mounts(c)
	if err != nil {
		return nil, nil, err
	}
	cargs := stringSlice(c["args"])
	if len(sliceOf(c["command"])) > 0 || len(cargs) != 2 || cargs[0] != "serve" {
		return nil, nil, fmt.Errorf("the registry container runs %v %v, want args [serve <config>]", c["command"], cargs)
	}
	config, ok := remap(mounts, cargs[1])
	if !ok {
		return nil, nil, fmt.Errorf("the registry's configuration %s is on no volume", cargs[1])
	}
	if err := p.remapConfig(mounts, config); err != nil {
		return nil, nil, err
	}
	cenv, err := p.env(c, mounts)
	if err != nil {
		return nil, nil, err
	}
	env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(p.dir, "home")}, cenv...)
	return []string{"serve", config}, env, nil
}

// remapConfig rewrites the configuration file: http.addr moves to 127.0.0.1:<port>, debug and metrics
// listeners to free ports, absolute paths onto the host, the sidecars' addresses to their ports here.
func (p *pod) remapConfig(mounts map[string]string, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("the rendered configuration is not YAML: %w", err)
	}
	var walkErr error
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
				n.Value = "127.0.0.1:" + strconv.Itoa(p.port)
			case key == "http.debug.addr" || key == "metrics.addr":
				port, err := freePort()
				if err != nil {
					walkErr = err
				}
				n.Value = "127.0.0.1:" + strconv.Itoa(port)
			case n.Tag == "!!str" && strings.HasPrefix(n.Value, "/") && len(n.Value) > 1:
				host, ok := remap(mounts, n.Value)
				if !ok {
					walkErr = errors.Join(walkErr, fmt.Errorf("configuration key %s = %s is on no volume", key, n.Value))
				}
				n.Value = host
			default:
				// An address of a native sidecar (proxy.remoteurl names the parent gate).
				for from, to := range p.listen {
					n.Value = strings.ReplaceAll(n.Value, from, to)
				}
			}
		}
	}
	walk(&doc, "")
	if walkErr != nil {
		return walkErr
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// renderedConfig returns the registry configuration the chart renders, unmodified.
func renderedConfig(res *chartrender.Result) (string, error) {
	cm, ok := res.Find("ConfigMap", deploymentName+"-config")
	if !ok {
		return "", fmt.Errorf("the chart renders no ConfigMap %s-config", deploymentName)
	}
	data, _ := cm.Object["data"].(map[string]any)
	s, _ := data["config.yml"].(string)
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func mapAt(m map[string]any, path ...string) (map[string]any, error) {
	cur := m
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("rendered object has no map at %s", strings.Join(path, "."))
		}
		cur = next
	}
	return cur, nil
}

func sliceOf(v any) []any {
	s, _ := v.([]any)
	return s
}

func stringSlice(v any) []string {
	var out []string
	for _, x := range sliceOf(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
