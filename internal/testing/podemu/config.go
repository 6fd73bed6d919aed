package podemu

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// remapConfig rewrites the registry's configuration file in place and returns it: http.addr moves to
// 127.0.0.1:<Port>, the debug and metrics listeners to free ports, every absolute path onto the host through the
// container's mounts, the sidecars' addresses to their ports here. Nothing else changes. A path on no volume is
// an error: on a read-only root filesystem it would not work in the cluster either.
func (p *Pod) remapConfig(mounts map[string]string, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the registry's configuration: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("the rendered %s is not YAML: %w", ConfigKey, err)
	}
	if err := p.remapNode(mounts, &doc, ""); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return "", err
	}
	return string(out), nil
}

// remapNode remaps the scalars under n, key being n's dotted configuration key.
func (p *Pod) remapNode(mounts map[string]string, n *yaml.Node, key string) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := p.remapNode(mounts, c, key); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if key != "" {
				k = key + "." + k
			}
			if err := p.remapNode(mounts, n.Content[i+1], k); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		return p.remapScalar(mounts, n, key)
	}
	return nil
}

// remapScalar remaps one configuration value, recording what it was in Remapped (and HostPath).
func (p *Pod) remapScalar(mounts map[string]string, n *yaml.Node, key string) error {
	switch {
	case key == "http.addr":
		_, port, err := net.SplitHostPort(n.Value)
		if err != nil {
			return fmt.Errorf("http.addr %q is not host:port: %w", n.Value, err)
		}
		p.ContainerPort, _ = strconv.Atoi(port)
		p.Remapped[key] = n.Value
		n.Value = loopback(p.Port)
	case key == "http.debug.addr" || key == "metrics.addr":
		port, err := FreePort()
		if err != nil {
			return fmt.Errorf("a port for %s: %w", key, err)
		}
		p.Remapped[key] = n.Value
		n.Value = loopback(port)
	case n.Tag == "!!str" && strings.HasPrefix(n.Value, "/") && len(n.Value) > 1:
		host, ok := remap(mounts, n.Value)
		if !ok {
			return fmt.Errorf("configuration key %s = %s is on no volume mounted in the registry container", key, n.Value)
		}
		p.Remapped[key] = n.Value
		p.HostPath[key] = host
		n.Value = host
	default:
		// An address of a native sidecar on the pod's loopback (proxy.remoteurl names the parent gate). A sidecar
		// listening on every interface (":5001", the token server) is reached through the Service, at an address
		// that stays as rendered: clients map it themselves.
		for from, to := range p.Listen {
			if podLocal(from) && strings.Contains(n.Value, from) {
				p.Remapped[key] = n.Value
				n.Value = strings.ReplaceAll(n.Value, from, to)
			}
		}
	}
	return nil
}

// podLocal reports whether a sidecar's listen address names a host (the pod's loopback), so that the pod's own
// configuration may name it; ":port" listens on every interface and is reached through the Service.
func podLocal(addr string) bool { return !strings.HasPrefix(addr, ":") }
