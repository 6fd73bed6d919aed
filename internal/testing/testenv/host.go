package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildProduct builds ./cmd/connected-registry of the module rooted at repoRoot into dir: the binary of the
// chart's image, which the registry pod's containers run when a benchmark or test emulates that pod.
func BuildProduct(repoRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "connected-registry")
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("finding the go tool to build ./cmd/connected-registry: %w", err)
	}
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/connected-registry")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/connected-registry: %w\n%s", err, out)
	}
	return bin, nil
}

// LoopbackName returns this machine's host name and its address when the name resolves to IPv4 loopback
// addresses only (Debian's /etc/hosts maps it to 127.0.1.1), else 127.0.0.1 twice. Addressed by a name, a
// parent on loopback is reached through the registry's parent gate as in a cluster: Go's HTTP clients never
// use a proxy for a loopback IP literal.
func LoopbackName() (name, ip string) {
	h, err := os.Hostname()
	if err != nil || h == "" || h == "localhost" {
		return "127.0.0.1", "127.0.0.1"
	}
	addrs, err := net.LookupHost(h)
	if err != nil || len(addrs) == 0 {
		return "127.0.0.1", "127.0.0.1"
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return "127.0.0.1", "127.0.0.1"
		}
	}
	return h, addrs[0]
}
