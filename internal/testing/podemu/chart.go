package podemu

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/connected-registry/connected-registry/internal/testing/chartrender"
)

// RenderedConfig returns the registry configuration the chart renders, unmodified.
func RenderedConfig(res *chartrender.Result) (string, error) {
	cm, ok := res.Find("ConfigMap", ConfigMapName)
	if !ok {
		return "", fmt.Errorf("the chart renders no ConfigMap %s", ConfigMapName)
	}
	data, err := mapAt(cm.Object, "data")
	if err != nil {
		return "", fmt.Errorf("the ConfigMap %s: %w", ConfigMapName, err)
	}
	config, ok := data[ConfigKey].(string)
	if !ok {
		return "", fmt.Errorf("the ConfigMap %s has no %s", ConfigMapName, ConfigKey)
	}
	return config, nil
}

// Container returns the registry Deployment's container (list "containers") or init container (list
// "initContainers") name, as res renders it.
func Container(res *chartrender.Result, list, name string) (map[string]any, error) {
	spec, err := podSpec(res)
	if err != nil {
		return nil, err
	}
	return findContainer(spec, list, name)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening waits at most timeout until addr accepts TCP connections. exited, if not nil, ends the wait
// early once the process that should listen has exited.
func WaitListening(addr string, timeout time.Duration, exited func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if exited != nil && exited() {
			return fmt.Errorf("nothing listens on %s, and the process exited: %w", addr, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s within %s: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podSpec returns the pod template's spec of the registry Deployment.
func podSpec(res *chartrender.Result) (map[string]any, error) {
	dep, ok := res.Find("Deployment", DeploymentName)
	if !ok {
		return nil, fmt.Errorf("the chart renders no Deployment %s", DeploymentName)
	}
	spec, err := mapAt(dep.Object, "spec", "template", "spec")
	if err != nil {
		return nil, fmt.Errorf("the Deployment %s: %w", DeploymentName, err)
	}
	return spec, nil
}

func findContainer(spec map[string]any, list, name string) (map[string]any, error) {
	for _, c := range sliceOf(spec[list]) {
		if cm, _ := c.(map[string]any); cm["name"] == name {
			return cm, nil
		}
	}
	return nil, fmt.Errorf("the Deployment has no %s named %q", list, name)
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// mapAt returns the map at path in a rendered object.
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
