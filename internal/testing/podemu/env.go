package podemu

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// env resolves a container's environment: values from Secrets, ConfigMaps and the downward API's limits.cpu,
// paths under its mounts moved onto the host, the sidecars' addresses moved to their ports here.
func (p *Pod) env(c map[string]any, mounts map[string]string) ([]string, error) {
	var out []string
	for _, e := range sliceOf(c["env"]) {
		em, _ := e.(map[string]any)
		name, _ := em["name"].(string)
		value, hasValue := em["value"].(string)
		if from, ok := em["valueFrom"].(map[string]any); ok {
			v, err := p.valueFrom(c, from)
			if err != nil {
				return nil, fmt.Errorf("env %s of container %s: %w", name, c["name"], err)
			}
			value = v
		} else if !hasValue && em["value"] != nil {
			return nil, fmt.Errorf("env %s of container %s has a non-string value %v", name, c["name"], em["value"])
		}
		out = append(out, name+"="+p.remapEnvValue(name, value, mounts))
	}
	if len(sliceOf(c["envFrom"])) > 0 {
		return nil, fmt.Errorf("container %s uses envFrom, which podemu does not emulate", c["name"])
	}
	return out, nil
}

// remapEnvValue moves an environment value that is a path under a mount onto the host, recording it, and the
// sidecars' addresses in it to their ports here.
func (p *Pod) remapEnvValue(name, value string, mounts map[string]string) string {
	if strings.HasPrefix(value, "/") {
		if host, ok := remap(mounts, value); ok {
			p.Remapped["env "+name] = value
			p.HostPath["env "+name] = host
			value = host
		}
	}
	for from, to := range p.Listen {
		if podLocal(from) {
			value = strings.ReplaceAll(value, from, to)
		}
	}
	return value
}

// valueFrom resolves an environment variable's valueFrom.
func (p *Pod) valueFrom(c, from map[string]any) (string, error) {
	if ref, ok := from["secretKeyRef"].(map[string]any); ok {
		name, _ := ref["name"].(string)
		key, _ := ref["key"].(string)
		data, err := p.secret(name)
		return data[key], err
	}
	if ref, ok := from["configMapKeyRef"].(map[string]any); ok {
		name, _ := ref["name"].(string)
		key, _ := ref["key"].(string)
		data, err := p.configMap(name)
		if err != nil {
			return "", fmt.Errorf("reads a ConfigMap: %w", err)
		}
		return data[key], nil
	}
	if ref, ok := from["resourceFieldRef"].(map[string]any); ok {
		return cpuLimit(c, ref)
	}
	if ref, ok := from["fieldRef"].(map[string]any); ok {
		// The downward API's names of the pod, for Events about it: there is no API server to record them here.
		switch ref["fieldPath"] {
		case "metadata.name":
			return DeploymentName + "-podemu", nil
		case "metadata.uid":
			return "00000000-0000-0000-0000-00000000e5e5", nil
		case "status.podIP":
			if p.opts.PodIP == "" {
				return "", fmt.Errorf("reads status.podIP, and podemu.Options.PodIP is empty")
			}
			return p.opts.PodIP, nil
		}
	}
	return "", fmt.Errorf("uses a valueFrom podemu does not emulate: %v", from)
}

// cpuLimit resolves a resourceFieldRef as the kubelet does: limits.cpu rounds up to whole CPUs, and is the
// node's CPUs without a limit.
func cpuLimit(c, ref map[string]any) (string, error) {
	res, _ := ref["resource"].(string)
	if res != "limits.cpu" {
		return "", fmt.Errorf("resourceFieldRef %s is not emulated", res)
	}
	lim, _ := mapAt(c, "resources", "limits")
	if v, ok := lim["cpu"]; ok {
		return cpuCeil(fmt.Sprint(v))
	}
	return strconv.Itoa(runtime.NumCPU()), nil
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
